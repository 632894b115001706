//! The fake server's side of TDS: packets, the pre-login and login answers, one-row results of
//! `int`/`bigint` columns, server errors, and the decoding of the `sp_executesql` requests the
//! provider sends (`nvarchar` and `int` parameters).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A parameter value of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    Int(i32),
}

/// A result column value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val {
    Int(i32),
    BigInt(i64),
}

/// A cell of a [`Reply::Table`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cell {
    Int(i32),
    Str(String),
}

/// The type of a [`Reply::Table`] column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Col {
    /// `int` (INTN, 4 bytes).
    Int,
    /// `nvarchar(256)`.
    NVarChar,
}

/// What a statement answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Row(Vec<Val>),
    /// Any number of rows of named `int` / `nvarchar` columns.
    Table(Vec<(&'static str, Col)>, Vec<Vec<Cell>>),
    /// No result set (DDL).
    Done,
    /// A server error: number, class (severity), message.
    Error(u32, u8, String),
}

pub fn ints(values: &[i32]) -> Reply {
    Reply::Row(values.iter().map(|v| Val::Int(*v)).collect())
}

pub async fn read_message(rd: &mut OwnedReadHalf) -> std::io::Result<Vec<u8>> {
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 8];
        rd.read_exact(&mut header).await?;
        let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
        let mut body = vec![0u8; len.saturating_sub(8)];
        rd.read_exact(&mut body).await?;
        payload.extend_from_slice(&body);
        if header[1] & 0x01 != 0 {
            return Ok(payload);
        }
    }
}

pub async fn write_message(wr: &mut OwnedWriteHalf, payload: &[u8]) -> std::io::Result<()> {
    let len = u16::try_from(payload.len() + 8).expect("small responses");
    let mut packet = vec![0x04, 0x01];
    packet.extend_from_slice(&len.to_be_bytes());
    packet.extend_from_slice(&[0, 0, 1, 0]);
    packet.extend_from_slice(payload);
    wr.write_all(&packet).await
}

pub fn prelogin_response() -> Vec<u8> {
    // VERSION at offset 11 (6 bytes), ENCRYPTION at 17 (1 byte: 2 = not supported), terminator.
    let mut out = vec![
        0x00, 0x00, 0x0B, 0x00, 0x06, 0x01, 0x00, 0x11, 0x00, 0x01, 0xFF,
    ];
    out.extend_from_slice(&[0x10, 0x00, 0x07, 0xD0, 0x00, 0x00]);
    out.push(0x02);
    out
}

pub fn done(rows: u64) -> Vec<u8> {
    done_with(if rows > 0 { 0x10 } else { 0 }, rows)
}

/// DONE with `status` (0x10: count valid, 0x02: error).
fn done_with(status: u16, rows: u64) -> Vec<u8> {
    let mut out = vec![0xFD];
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&0xC1u16.to_le_bytes());
    out.extend_from_slice(&rows.to_le_bytes());
    out
}

pub fn encode(reply: &Reply) -> Vec<u8> {
    match reply {
        Reply::Row(row) => result(row),
        Reply::Table(columns, rows) => table(columns, rows),
        Reply::Done => done(0),
        Reply::Error(number, class, message) => {
            let mut out = error_token(*number, *class, message);
            out.extend_from_slice(&done_with(0x02, 0));
            out
        }
    }
}

/// COLMETADATA for `row.len()` unnamed `int` (INT4) or `bigint` (INT8) columns, one ROW, DONE.
fn result(row: &[Val]) -> Vec<u8> {
    let mut out = vec![0x81];
    out.extend_from_slice(&u16::try_from(row.len()).expect("few columns").to_le_bytes());
    for value in row {
        out.extend_from_slice(&0u32.to_le_bytes()); // user type
        out.extend_from_slice(&0u16.to_le_bytes()); // flags
        out.push(match value {
            Val::Int(_) => 0x38,    // INT4
            Val::BigInt(_) => 0x7F, // INT8
        });
        out.push(0); // empty column name
    }
    out.push(0xD1);
    for value in row {
        match value {
            Val::Int(v) => out.extend_from_slice(&v.to_le_bytes()),
            Val::BigInt(v) => out.extend_from_slice(&v.to_le_bytes()),
        }
    }
    out.extend_from_slice(&done(1));
    out
}

/// COLMETADATA for named `int` (INTN) and `nvarchar(256)` columns, a ROW per row, DONE.
fn table(columns: &[(&'static str, Col)], rows: &[Vec<Cell>]) -> Vec<u8> {
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let mut out = vec![0x81];
    out.extend_from_slice(
        &u16::try_from(columns.len())
            .expect("few columns")
            .to_le_bytes(),
    );
    for (name, col) in columns {
        out.extend_from_slice(&0u32.to_le_bytes()); // user type
        out.extend_from_slice(&0x0001u16.to_le_bytes()); // flags: nullable
        match col {
            Col::Int => out.extend_from_slice(&[0x26, 4]), // INTN, 4 bytes
            Col::NVarChar => {
                out.push(0xE7); // NVARCHAR
                out.extend_from_slice(&512u16.to_le_bytes()); // max bytes
                out.extend_from_slice(&[0x09, 0x04, 0xD0, 0x00, 0x34]); // collation
            }
        }
        out.push(u8::try_from(name.encode_utf16().count()).expect("a short name"));
        out.extend_from_slice(&utf16(name));
    }
    for row in rows {
        out.push(0xD1);
        for cell in row {
            match cell {
                Cell::Int(v) => {
                    out.push(4);
                    out.extend_from_slice(&v.to_le_bytes());
                }
                Cell::Str(text) => {
                    let bytes = utf16(text);
                    out.extend_from_slice(
                        &u16::try_from(bytes.len())
                            .expect("a short value")
                            .to_le_bytes(),
                    );
                    out.extend_from_slice(&bytes);
                }
            }
        }
    }
    out.extend_from_slice(&done(rows.len() as u64));
    out
}

/// An ERROR token (TDS 7.2+): number, state, class, message, server, procedure, line.
fn error_token(number: u32, class: u8, message: &str) -> Vec<u8> {
    let utf16 = |s: &str| -> Vec<u8> { s.encode_utf16().flat_map(u16::to_le_bytes).collect() };
    let mut body = Vec::new();
    body.extend_from_slice(&number.to_le_bytes());
    body.push(1); // state
    body.push(class);
    let units = u16::try_from(message.encode_utf16().count()).expect("a short message");
    body.extend_from_slice(&units.to_le_bytes());
    body.extend_from_slice(&utf16(message));
    body.push(4);
    body.extend_from_slice(&utf16("fake"));
    body.push(0); // no procedure
    body.extend_from_slice(&1u32.to_le_bytes()); // line
    let mut out = vec![0xAA];
    out.extend_from_slice(
        &u16::try_from(body.len())
            .expect("a short token")
            .to_le_bytes(),
    );
    out.extend_from_slice(&body);
    out
}

/// Decodes an `sp_executesql` RPC: returns the statement and the values of `@P1…`.
pub fn parse_rpc(payload: &[u8]) -> (String, Vec<Value>) {
    let mut r = Reader(payload);
    let headers = r.u32() as usize;
    r.skip(headers - 4);
    assert_eq!(r.u16(), 0xFFFF, "the provider only sends sp_executesql");
    assert_eq!(r.u16(), 10, "sp_executesql");
    r.u16(); // option flags
    let mut values = Vec::new();
    while !r.0.is_empty() {
        let name_len = usize::from(r.u8());
        r.skip(name_len * 2);
        r.u8(); // status
        values.push(r.value());
    }
    let sql = match values.first() {
        Some(Value::Str(sql)) => sql.clone(),
        other => panic!("no statement: {other:?}"),
    };
    // values[1] is the parameter declaration list.
    (sql, values.into_iter().skip(2).collect())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> &[u8] {
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        head
    }
    fn skip(&mut self, n: usize) {
        self.take(n);
    }
    fn u8(&mut self) -> u8 {
        self.take(1)[0]
    }
    fn u16(&mut self) -> u16 {
        let b = self.take(2);
        u16::from_le_bytes([b[0], b[1]])
    }
    fn u32(&mut self) -> u32 {
        let b = self.take(4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
    fn value(&mut self) -> Value {
        match self.u8() {
            0xE7 => {
                assert_ne!(self.u16(), 0xFFFF, "no nvarchar(max) expected");
                self.skip(5); // collation
                let len = usize::from(self.u16());
                let units: Vec<u16> = self
                    .take(len)
                    .chunks(2)
                    .map(|c| u16::from_le_bytes([c[0], c[1]]))
                    .collect();
                Value::Str(String::from_utf16(&units).expect("valid UTF-16"))
            }
            0x26 => {
                self.u8(); // max length
                match self.u8() {
                    4 => {
                        let b = self.take(4);
                        Value::Int(i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    }
                    other => panic!("unexpected int length {other}"),
                }
            }
            other => panic!("unexpected parameter type {other:#x}"),
        }
    }
}
