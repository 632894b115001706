//! Which kind of mount a lock directory lives on, and whether `flock` taken through it excludes
//! other hosts.
//!
//! `flock` on a network share only excludes processes of other hosts if the client forwards the
//! lock to the server. Many clients do not (NFS `nolock`, CIFS `nobrl`, sshfs and most other
//! FUSE file systems): each host then keeps its own lock table, two hosts both "hold" the same
//! lock, and nothing reports an error. [`Mount::detect`] classifies the mount so the provider
//! never relies on `flock` where locks may stay local to each client.

use std::fmt;
use std::path::{Path, PathBuf};

/// What a mount tells about whether file locks taken through it exclude other hosts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum MountClass {
    /// A file system of one host (ext4, xfs, btrfs, tmpfs, zfs, overlay...): only processes of
    /// this host use it, and `flock` excludes them all.
    Local,
    /// A network or cluster file system that forwards locks to the server, so `flock` excludes
    /// other hosts too.
    ForwardsLocks,
    /// A network file system known to keep locks local to each client (NFS
    /// `nolock`/`local_lock=flock|all`, CIFS `nobrl`, sshfs, rclone, s3fs, gcsfuse, davfs2, ...).
    LocalOnlyLocks,
    /// Anything not recognised (other FUSE file systems, 9p, virtiofs, ...), or the mount could
    /// not be read.
    Unknown,
}

impl MountClass {
    /// A short stable name: `local`, `forwards-locks`, `local-only-locks` or `unknown`.
    pub fn as_str(&self) -> &'static str {
        match self {
            MountClass::Local => "local",
            MountClass::ForwardsLocks => "forwards-locks",
            MountClass::LocalOnlyLocks => "local-only-locks",
            MountClass::Unknown => "unknown",
        }
    }
}

impl fmt::Display for MountClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The mount a directory lives on, and its classification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    class: MountClass,
    fs_type: String,
    source: String,
    mount_point: PathBuf,
    options: String,
    reason: String,
}

impl Mount {
    /// Finds and classifies the mount of `dir`.
    ///
    /// On Linux, the entry of `/proc/self/mountinfo` whose mount point is the longest prefix of
    /// the canonicalized `dir`. On Windows, a UNC path (`\\server\share`, `\\?\UNC\...`) forwards
    /// locks and anything else is local. Other platforms get [`MountClass::Unknown`].
    ///
    /// Never fails: when the mount cannot be determined, the class is [`MountClass::Unknown`]
    /// and [`reason`](Self::reason) says why.
    pub fn detect(dir: &Path) -> Mount {
        detect(dir)
    }

    /// How locks taken through this mount behave across hosts.
    pub fn class(&self) -> MountClass {
        self.class
    }

    /// The file system type, e.g. `nfs4`, `fuse.sshfs`, `fuse` or `ext4` (empty if unknown).
    pub fn fs_type(&self) -> &str {
        &self.fs_type
    }

    /// The mount source, e.g. `server:/export` or `/dev/vda1` (empty if unknown).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where the file system is mounted (empty if unknown).
    pub fn mount_point(&self) -> &Path {
        &self.mount_point
    }

    /// The per-mount options, then the super-block options not already among them, joined with
    /// `,` (for display).
    pub fn options(&self) -> &str {
        &self.options
    }

    /// One sentence saying why the mount has this class.
    pub fn reason(&self) -> &str {
        &self.reason
    }

    fn unknown(reason: String) -> Mount {
        Mount {
            class: MountClass::Unknown,
            fs_type: String::new(),
            source: String::new(),
            mount_point: PathBuf::new(),
            options: String::new(),
            reason,
        }
    }
}

impl fmt::Display for Mount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut head = vec![self.fs_type.clone(), self.source.clone()];
        if !self.mount_point.as_os_str().is_empty() {
            head.push(format!("on {}", self.mount_point.display()));
        }
        if !self.options.is_empty() {
            head.push(format!("({})", self.options));
        }
        head.retain(|s| !s.is_empty());
        if !head.is_empty() {
            write!(f, "{}: ", head.join(" "))?;
        }
        write!(f, "{} — {}", self.class, self.reason)
    }
}

#[cfg(target_os = "linux")]
fn detect(dir: &Path) -> Mount {
    const MOUNTINFO: &str = "/proc/self/mountinfo";
    let path = match dir.canonicalize() {
        Ok(path) => path,
        Err(e) => return Mount::unknown(format!("cannot resolve {}: {e}", dir.display())),
    };
    let text = match std::fs::read(MOUNTINFO) {
        Ok(bytes) => bytes,
        Err(e) => return Mount::unknown(format!("cannot read {MOUNTINFO}: {e}")),
    };
    // Both sides go through the same lossy conversion, so a non-UTF-8 mount point still matches.
    let entries = parse_mountinfo(&String::from_utf8_lossy(&text));
    let Some(e) = find_mount(&entries, Path::new(&*path.to_string_lossy())) else {
        return Mount::unknown(format!("no mount in {MOUNTINFO} holds {}", path.display()));
    };
    let (class, reason) = classify(&e.fs_type, &e.source, &e.mount_options, &e.super_options);
    let mut options = e.mount_options.clone();
    for opt in e.super_options.split(',') {
        if !opt.is_empty() && !options.split(',').any(|o| o == opt) {
            options.push(',');
            options.push_str(opt);
        }
    }
    Mount {
        class,
        fs_type: e.fs_type.clone(),
        source: e.source.clone(),
        mount_point: PathBuf::from(&e.mount_point),
        options,
        reason,
    }
}

#[cfg(windows)]
fn detect(dir: &Path) -> Mount {
    let path = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    windows_mount(&path.to_string_lossy())
}

#[cfg(not(any(target_os = "linux", windows)))]
fn detect(_dir: &Path) -> Mount {
    Mount::unknown("mount detection is implemented on Linux and Windows only".to_owned())
}

/// A Windows path: a UNC path forwards locks, anything else is taken as a local drive.
#[cfg(any(windows, test))]
fn windows_mount(path: &str) -> Mount {
    let verbatim = [r"\\?\UNC\", r"\\.\UNC\"]
        .iter()
        .find_map(|p| path.strip_prefix(p));
    let plain = path
        .strip_prefix(r"\\")
        .filter(|r| !r.starts_with(['?', '.']));
    let (class, root, reason) = match verbatim.or(plain) {
        Some(share) => {
            let share: Vec<&str> = share.split('\\').take(2).collect();
            let reason = "a UNC path: the SMB redirector forwards LockFileEx byte-range locks \
                          to the server";
            (
                MountClass::ForwardsLocks,
                format!(r"\\{}", share.join(r"\")),
                reason,
            )
        }
        None => {
            let path = path.strip_prefix(r"\\?\").unwrap_or(path);
            let drive = path.get(..2).filter(|d| d.ends_with(':'));
            let root = drive.map(|d| format!(r"{d}\")).unwrap_or_default();
            let reason = "not a UNC path, so a local drive (mapped network drives are not told \
                          apart, but they too go through the SMB redirector, which forwards locks)";
            (MountClass::Local, root, reason)
        }
    };
    let mount_point = PathBuf::from(&root);
    let unknown = Mount::unknown(reason.to_owned());
    Mount {
        class,
        source: root,
        mount_point,
        ..unknown
    }
}

/// One line of `/proc/self/mountinfo` (see proc(5)), paths and source unescaped.
#[cfg(any(target_os = "linux", test))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    pub(crate) mount_point: String,
    pub(crate) mount_options: String,
    pub(crate) fs_type: String,
    pub(crate) source: String,
    pub(crate) super_options: String,
}

/// Parses `/proc/self/mountinfo` text, skipping malformed lines.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// `id parent major:minor root mount-point mount-options [optional...] - fstype source super`.
#[cfg(any(target_os = "linux", test))]
fn parse_line(line: &str) -> Option<MountEntry> {
    let mut fields = line.split(' ');
    fields.next()?.parse::<u64>().ok()?;
    fields.next()?.parse::<u64>().ok()?;
    fields.next()?.split_once(':')?;
    let _root = fields.next()?;
    let mount_point = unescape(fields.next()?);
    let mount_options = fields.next()?.to_owned();
    fields.by_ref().find(|f| *f == "-")?;
    let fs_type = fields.next()?.to_owned();
    let source = unescape(fields.next()?);
    let super_options = fields.next()?.to_owned();
    if !mount_point.starts_with('/') || fs_type.is_empty() {
        return None;
    }
    Some(MountEntry {
        mount_point,
        mount_options,
        fs_type,
        source,
        super_options,
    })
}

/// Decodes the kernel's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
#[cfg(any(target_os = "linux", test))]
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)) && d[0] <= b'3');
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The entry whose mount point is the longest path-component prefix of `path`; among entries
/// on the same mount point the last one, which is mounted over the others.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn find_mount<'a>(entries: &'a [MountEntry], path: &Path) -> Option<&'a MountEntry> {
    entries
        .iter()
        .filter(|e| path.starts_with(&e.mount_point))
        // `max_by_key` returns the last of equal maxima.
        .max_by_key(|e| Path::new(&e.mount_point).components().count())
}

/// Classifies a mount from its mountinfo fields: `(class, reason)`.
#[cfg(any(target_os = "linux", test))]
pub(crate) fn classify(
    fs_type: &str,
    source: &str,
    mount_options: &str,
    super_options: &str,
) -> (MountClass, String) {
    use MountClass::*;
    let options = format!("{mount_options},{super_options}");
    let has = |opt: &str| options.split(',').any(|o| o == opt);
    let (class, why) = match fs_type {
        "ext2" | "ext3" | "ext4" | "xfs" | "btrfs" | "tmpfs" | "ramfs" | "zfs" | "f2fs" | "jfs"
        | "reiserfs" | "bcachefs" | "overlay" | "squashfs" | "vfat" | "exfat" | "ntfs"
        | "ntfs3" | "hfsplus" | "apfs" | "msdos" | "devtmpfs" | "nilfs2" | "udf" | "iso9660"
        | "erofs" | "fuseblk" => (Local, "is a local file system"),
        "nfs" | "nfs4" if has("nolock") => (LocalOnlyLocks, "mounted with nolock"),
        "nfs" | "nfs4" if has("local_lock=flock") => {
            (LocalOnlyLocks, "mounted with local_lock=flock")
        }
        "nfs" | "nfs4" if has("local_lock=all") => (LocalOnlyLocks, "mounted with local_lock=all"),
        "nfs" | "nfs4" => (
            ForwardsLocks,
            "mounted without nolock or local_lock=flock|all",
        ),
        "cifs" | "smb3" if has("nobrl") || has("nolock") => (LocalOnlyLocks, "mounted with nobrl"),
        "cifs" | "smb3" => (
            ForwardsLocks,
            "mounted without nobrl (since Linux 5.5 flock goes to the server as a byte-range \
             lock; older kernels kept it on the client, which `tierlock doctor --peer` proves)",
        ),
        "gfs2" | "ocfs2" if has("localflocks") => (LocalOnlyLocks, "mounted with localflocks"),
        "ceph" | "glusterfs" | "fuse.glusterfs" | "gpfs" | "ocfs2" | "gfs2" | "fuse.ceph-fuse"
        | "fuse.ceph" | "fuse.juicefs" => (ForwardsLocks, "is a cluster file system"),
        "lustre" if has("localflock") => (LocalOnlyLocks, "mounted with localflock"),
        "lustre" if has("flock") => (ForwardsLocks, "mounted with flock"),
        "lustre" => (Unknown, "mounted without flock or localflock"),
        "beegfs" => (
            Unknown,
            "has global flock only if configured so (not a mount option)",
        ),
        "fuse.sshfs" | "fuse.rclone" | "fuse.s3fs" | "s3fs" | "fuse.gcsfuse" | "gcsfuse"
        | "fuse.davfs" | "davfs" | "fuse.goofys" | "fuse.mountpoint-s3" | "fuse.s3backer" => {
            (LocalOnlyLocks, "does not forward locks to its server")
        }
        "fuse" => (Unknown, "does not name its daemon (as with bindfs)"),
        _ => (Unknown, "is not a file system tierlock knows"),
    };
    let what = match fs_type {
        "fuse" => format!("fuse from {source}"),
        _ => fs_type.to_owned(),
    };
    let consequence = match class {
        Local => "only this host uses it, and flock excludes all its processes",
        ForwardsLocks => "flock is forwarded to the server, so it excludes other hosts too",
        LocalOnlyLocks => "flock locks stay on this client",
        Unknown => "whether flock excludes other hosts is unknown",
    };
    (class, format!("{what} {why}: {consequence}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = r"22 1 252:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
24 22 0:23 / /tmp rw,nosuid,nodev shared:5 - tmpfs tmpfs rw,size=8126464k,inode64
42 27 0:39 / /tmp/rig/hostA rw,nosuid,nodev,relatime - fuse /tmp/rig/backing rw,user_id=0,group_id=0,default_permissions,allow_other
50 22 0:45 / /mnt/share rw,relatime shared:30 - nfs4 server:/export rw,vers=4.2,rsize=1048576,wsize=1048576,namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.2,local_lock=none,addr=10.0.0.1
51 22 0:46 / /mnt/share2 rw,relatime shared:31 - nfs server:/old rw,vers=3,rsize=1048576,wsize=1048576,namlen=255,hard,nolock,proto=tcp,timeo=600,retrans=2,sec=sys,mountaddr=10.0.0.1,mountvers=3,mountport=20048,mountproto=udp,local_lock=all,addr=10.0.0.1
52 22 0:47 / /mnt/flock rw,relatime shared:32 - nfs server:/flock rw,vers=3,hard,proto=tcp,timeo=600,retrans=2,sec=sys,local_lock=flock,addr=10.0.0.1
53 22 0:48 / /mnt/smb rw,relatime shared:33 - cifs //nas/data rw,vers=3.1.1,cache=strict,username=u,uid=0,noforceuid,gid=0,noforcegid,addr=10.0.0.3,file_mode=0755,dir_mode=0755,soft,nounix,serverino,mapposix,rsize=4194304,wsize=4194304,bsize=1048576,echo_interval=60,actimeo=1
54 22 0:49 / /mnt/smb-nobrl rw,relatime shared:34 - cifs //nas/data rw,vers=3.1.1,cache=strict,username=u,uid=0,noforceuid,gid=0,noforcegid,addr=10.0.0.3,file_mode=0755,dir_mode=0755,soft,nounix,nobrl,serverino,mapposix,rsize=4194304,wsize=4194304
55 22 0:50 / /mnt/ssh rw,nosuid,nodev,relatime shared:35 - fuse.sshfs user@host:/srv rw,user_id=1000,group_id=1000
56 22 0:51 / /mnt/ceph rw,relatime shared:36 master:2 - ceph 10.0.0.4:6789:/ rw,name=admin,secret=<hidden>,acl
57 22 0:52 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w
58 22 0:53 / /mnt/host rw,nosuid,nodev,relatime shared:37 - 9p hostshare rw,sync,dirsync,access=client,trans=virtio
59 22 0:54 / /mnt/my\040share rw,relatime shared:38 - nfs4 server:/with\040space rw,vers=4.2,local_lock=none
60 22 252:1 /srv/data /data rw,relatime shared:1 - ext4 /dev/vda1 rw,errors=remount-ro
61 22 0:55 / /mnt/share rw,relatime shared:39 - nfs4 server:/over rw,vers=4.2,local_lock=flock
";

    fn entries() -> Vec<MountEntry> {
        parse_mountinfo(MOUNTINFO)
    }

    /// `(class, mount point)` of `path` in [`MOUNTINFO`].
    fn class_of(path: &str) -> (MountClass, String) {
        let entries = entries();
        let e = find_mount(&entries, Path::new(path)).expect("a mount");
        let (class, _) = classify(&e.fs_type, &e.source, &e.mount_options, &e.super_options);
        (class, e.mount_point.clone())
    }

    #[test]
    fn parses_every_real_line() {
        let entries = entries();
        assert_eq!(entries.len(), MOUNTINFO.lines().count());
        let at = |mp: &str| entries.iter().find(|e| e.mount_point == mp).expect(mp);
        let bindfs = at("/tmp/rig/hostA");
        assert_eq!(
            (&*bindfs.fs_type, &*bindfs.source),
            ("fuse", "/tmp/rig/backing")
        );
        assert_eq!(bindfs.mount_options, "rw,nosuid,nodev,relatime");
        assert!(bindfs.super_options.ends_with(",allow_other"));
        assert_eq!(at("/mnt/ceph").source, "10.0.0.4:6789:/"); // two optional fields
        assert_eq!(at("/mnt/my share").source, "server:/with space");
        assert_eq!(at("/data").fs_type, "ext4"); // a bind mount: root /srv/data
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape(r"/a\040b\011c\012d\134e"), "/a b\tc\nd\\e");
        assert_eq!(unescape(r"/end\04"), r"/end\04");
        assert_eq!(unescape(r"/not\999octal\"), r"/not\999octal\");
    }

    #[test]
    fn skips_malformed_lines() {
        let text = "\n\
            garbage\n\
            x 1 0:1 / / rw - ext4 /dev/a rw\n\
            1 1 0:1 / / rw shared:1 ext4 /dev/a rw\n\
            1 1 0:1 / / rw - ext4 /dev/a\n\
            1 1 0:1 / relative rw - ext4 /dev/a rw\n\
            1 1 01 / / rw - ext4 /dev/a rw\n\
            \u{e9}\u{e9} \\ - - -\n\
            7 1 0:1 / /ok rw - xfs /dev/b rw\n";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mount_point, "/ok");
    }

    #[test]
    fn classifies_real_mounts() {
        use MountClass::*;
        let cases = [
            ("/home/u", Local, "/"),
            ("/tmp/x", Local, "/tmp"),
            ("/tmp/rig/hostA/locks", Unknown, "/tmp/rig/hostA"),
            ("/mnt/share2/locks", LocalOnlyLocks, "/mnt/share2"), // nolock
            ("/mnt/flock", LocalOnlyLocks, "/mnt/flock"),
            ("/mnt/smb/locks", ForwardsLocks, "/mnt/smb"),
            ("/mnt/smb-nobrl/locks", LocalOnlyLocks, "/mnt/smb-nobrl"),
            ("/mnt/ssh", LocalOnlyLocks, "/mnt/ssh"),
            ("/mnt/ceph/a/b", ForwardsLocks, "/mnt/ceph"),
            (
                "/var/lib/docker/overlay2/abc/merged/f",
                Local,
                "/var/lib/docker/overlay2/abc/merged",
            ),
            ("/mnt/host/x", Unknown, "/mnt/host"),
            ("/mnt/my share/locks", ForwardsLocks, "/mnt/my share"), // local_lock=none
            ("/data/x", Local, "/data"),
        ];
        for (path, class, mount_point) in cases {
            assert_eq!(class_of(path), (class, mount_point.to_owned()), "{path}");
        }
    }

    #[test]
    fn longest_prefix_and_last_wins() {
        // /mnt/share is mounted twice: the later local_lock=flock mount hides the first.
        assert_eq!(class_of("/mnt/share/x").0, MountClass::LocalOnlyLocks);
        assert_eq!(class_of("/mnt/share").1, "/mnt/share");
        // /mnt/share2 is its own mount, and /mnt/shared is not under /mnt/share.
        assert_eq!(class_of("/mnt/share2").1, "/mnt/share2");
        assert_eq!(class_of("/mnt/shared/x").1, "/");
        assert_eq!(class_of("/").1, "/");
        assert!(find_mount(&entries(), Path::new("relative")).is_none());
        assert!(find_mount(&[], Path::new("/")).is_none());
    }

    #[test]
    fn classification_rules() {
        use MountClass::*;
        let c = |t: &str, opts: &str| classify(t, "src", "rw", opts).0;
        assert_eq!(c("nfs4", "rw,local_lock=posix"), ForwardsLocks);
        assert_eq!(c("nfs4", "rw,local_lock=all"), LocalOnlyLocks);
        assert_eq!(classify("nfs", "s", "rw,nolock", "rw").0, LocalOnlyLocks);
        assert_eq!(c("nfs", "rw,nolockd"), ForwardsLocks); // whole options only
        assert_eq!(c("smb3", "rw"), ForwardsLocks);
        assert_eq!(c("lustre", "rw,flock"), ForwardsLocks);
        assert_eq!(c("lustre", "rw,localflock"), LocalOnlyLocks);
        assert_eq!(c("lustre", "rw"), Unknown);
        assert_eq!(c("gfs2", "rw"), ForwardsLocks);
        assert_eq!(c("gfs2", "rw,localflocks"), LocalOnlyLocks);
        assert_eq!(c("fuse.juicefs", "rw"), ForwardsLocks);
        assert_eq!(c("beegfs", "rw"), Unknown);
        assert_eq!(c("fuse.rclone", "rw"), LocalOnlyLocks);
        assert_eq!(c("virtiofs", "rw"), Unknown);
        assert_eq!(c("fuse.bindfs", "rw"), Unknown);
        let reason = |t: &str, opts: &str| classify(t, "/src", "rw", opts).1;
        let nfs = "nfs4 mounted with local_lock=flock: flock locks stay on this client";
        assert_eq!(reason("nfs4", "rw,local_lock=flock"), nfs);
        assert!(reason("cifs", "rw").contains("tierlock doctor --peer"));
        assert!(reason("fuse", "rw").starts_with("fuse from /src does not name its daemon"));
    }

    #[test]
    fn windows_paths() {
        use MountClass::*;
        let w = |p: &str| {
            let m = windows_mount(p);
            (m.class(), m.source().to_owned())
        };
        let unc = (ForwardsLocks, r"\\nas\data".to_owned());
        assert_eq!(w(r"\\nas\data\locks"), unc);
        assert_eq!(w(r"\\?\UNC\nas\data\locks"), unc);
        assert_eq!(w(r"\\?\C:\locks"), (Local, r"C:\".to_owned()));
        assert_eq!(w(r"D:\locks"), (Local, r"D:\".to_owned()));
    }

    #[test]
    fn display() {
        assert_eq!(MountClass::LocalOnlyLocks.to_string(), "local-only-locks");
        assert_eq!(MountClass::ForwardsLocks.as_str(), "forwards-locks");
        let m = Mount::unknown("why".to_owned());
        assert_eq!(m.to_string(), "unknown — why");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn detects_a_real_temp_dir() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let m = Mount::detect(tmp.path());
        println!("{m}");
        assert!(!m.fs_type().is_empty(), "{m}");
        assert!(!m.source().is_empty(), "{m}");
        let canonical = tmp.path().canonicalize().expect("canonical");
        assert!(canonical.starts_with(m.mount_point()), "{m}");
        assert!(m.to_string().contains(" on "), "{m}");
        let missing = Mount::detect(&tmp.path().join("missing"));
        assert_eq!(missing.class(), MountClass::Unknown);
        assert!(missing.reason().starts_with("cannot resolve"), "{missing}");
    }
}
