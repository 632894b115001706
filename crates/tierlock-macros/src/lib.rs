//! The `#[locked]` attribute of [tierlock](https://docs.rs/tierlock): run an `async fn` under a
//! named lock.
//!
//! Use it through the `tierlock` crate (`tierlock::locked`, cargo feature `macros`, on by
//! default), not by depending on this crate: the code it generates names `::tierlock`.
//! See [`macro@locked`] for the reference.

#![forbid(unsafe_code)]

mod args;
mod duration;
mod expand;
mod name;

use proc_macro::TokenStream;

/// Runs an `async fn` under a named lock of a `LockManager`.
///
/// ```
/// use tierlock::{LockError, LockManager, MemoryProvider, locked};
///
/// #[derive(Debug)]
/// enum AppError {
///     Lock(LockError),
///     Declined,
/// }
///
/// impl From<LockError> for AppError {
///     fn from(e: LockError) -> Self {
///         AppError::Lock(e)
///     }
/// }
///
/// /// Pays an order, once: concurrent calls for the same order (from this process or, with a
/// /// file or database provider, from others) run one after the other.
/// #[locked(locks, "order:{id}", timeout = "5s")]
/// async fn pay(locks: &LockManager, id: u64, amount: u64) -> Result<u64, AppError> {
///     if amount == 0 {
///         return Err(AppError::Declined); // the lock is released on every way out
///     }
///     let total = add_fees(locks, id, amount).await?; // re-enters "order:{id}"
///     Ok(total)
/// }
///
/// #[locked(locks, "order:{id}")]
/// async fn add_fees(locks: &LockManager, id: u64, amount: u64) -> Result<u64, AppError> {
///     Ok(amount + 1)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), AppError> {
/// let locks = LockManager::new(MemoryProvider::new());
/// assert_eq!(pay(&locks, 7, 100).await?, 101);
/// assert!(matches!(pay(&locks, 7, 0).await, Err(AppError::Declined)));
/// assert!(locks.try_lock("order:7").await?.is_some()); // nothing stays held
/// # Ok(())
/// # }
/// ```
///
/// # Arguments
///
/// `#[locked(MANAGER, "NAME", timeout = TIMEOUT, crate = "PATH")]`; the last two are optional.
///
/// - **`MANAGER`**: any expression in scope at the start of the function whose type derefs to
///   `LockManager`: a parameter (`locks` of type `&LockManager`, `LockManager` or
///   `Arc<LockManager>`), a field (`self.locks`, `state.locks`), `&state.locks`,
///   `self.locks.clone()`, a call. It is passed as `LockManager::lock(&(MANAGER), ..)`, so deref
///   coercion applies, and it is evaluated once, before the body.
/// - **`"NAME"`**: the lock name, a string literal in `format!` syntax whose placeholders name
///   **parameters** of the function: `"order:{id}"`, `"order:{id:08}"`, `"{tenant}:{id:x}"`.
///   Parameters bound by patterns count (`(tenant, id): (u32, u64)`). Fields (`{self.id}`),
///   positional placeholders (`{}`, `{0}`) and `self` are compile errors: take the value as a
///   parameter, or call `LockManager::lock` by hand. A name without placeholders costs no
///   allocation.
/// - **`timeout`**: how long to wait for the lock before returning `LockError::Timeout`:
///   - a string literal parsed at compile time, in the units of the CLI's `--timeout`: `ms`,
///     `s`, `m`, `h`, combined (`"1m30s"`), with decimals down to the millisecond (`"1.5s"`),
///     or `"0"` for a single attempt (like `try_lock`, but the busy case is an error);
///   - or any expression of type `std::time::Duration` (`Duration::from_secs(5)`,
///     `self.timeout`), evaluated before the body;
///   - **if absent, the call waits as long as it takes** (`Duration::MAX`), like a mutex. It can
///     still be cancelled by dropping the future (`tokio::time::timeout`, a dropped request).
///     In request handlers, give a timeout.
/// - **`crate`**: the path of the crate the generated code names, `::tierlock` by default (as
///   serde's `#[serde(crate = "..")]`): `crate = "tierlock_core"` for code that depends on the
///   core crate only, or the path of a re-export.
///
/// # The function
///
/// It must be an `async fn` (free function, method with `self`, `&self` or `&mut self`,
/// associated function, or trait method with a default body) that returns `Result<T, E>` (or
/// an alias of it such as `anyhow::Result<T>`) where `E: From<LockError>`. Its signature,
/// visibility, generics, where clause, `impl Trait` parameters, docs and other attributes
/// (`#[must_use]`, `#[tracing::instrument]`, ...) are kept as written; only the body changes.
/// Several `#[locked]` on one function take their locks in order, outermost first.
///
/// # What it does
///
/// The body becomes, in effect:
///
/// ```text
/// let guard = LockManager::lock(&(MANAGER), &format!(NAME), TIMEOUT).await.map_err(E::from)?;
/// let output = async move { BODY }.await;
/// match (output, guard.release().await) {
///     (Ok(_), Err(lost @ LockError::Lost { .. })) => Err(E::from(lost)),
///     (output, _) => output,
/// }
/// ```
///
/// - **Owner and re-entry.** The body runs in the calling task, as the same lock owner (see
///   `tierlock::Owner`), so a nested `#[locked]` function or `lock` call on the same name
///   re-enters at once instead of deadlocking; other tasks and processes wait.
/// - **Every way out releases.** The body runs in a block of its own, so `return` and `?` in it
///   come back to the generated code, which releases the lock. A panic or a dropped future
///   (cancellation, a timeout around the call) drops the guard, which releases it too.
/// - **Errors.** If the lock cannot be taken (timeout, invalid name, provider failure) the body
///   does not run and the `LockError` is returned through `From`. After the body:
///   - the body's `Err` is returned as it is, whatever the release reports (the guard is
///     released in any case);
///   - if the body returned `Ok` but the release reports `LockError::Lost` (the external lock
///     was lost while held: another process may have held it during the body), the call
///     returns `Err(E::from(Lost))`: the work may not have been exclusive, so it must not pass
///     as a plain success (use fencing tokens where that matters: `docs/fencing.md` in the
///     repository);
///   - any other release error (the provider failed to confirm the release; it is freed when
///     its handle goes) does not turn a successful body into an error, because the body did
///     run under the lock. This differs from `LockManager::with_lock`, which reports every
///     release error; call `lock` and `release` by hand to see those.
/// - **The guard** is not visible to the body. To read a fencing token or watch for a lost
///   lock, call `MANAGER.lock(NAME, ..)` inside the body: it re-enters at once and returns a
///   guard of the same lock.
///
/// # Compile errors
///
/// Pointing at the offending tokens: a missing manager or name, an unknown, positional or
/// field placeholder (at the string), an invalid `timeout` string (at the string), a function
/// that is not `async` or returns nothing. A manager expression of the wrong type and an error
/// type without `From<LockError>` are reported by the type checker, at the manager expression
/// and at the return type.
#[proc_macro_attribute]
pub fn locked(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(args.into(), item.into()).into()
}
