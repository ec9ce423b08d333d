//! The daemons' shutdown trigger.

use nix::sys::signal::{SigSet, SigmaskHow, Signal};

/// Completes on SIGTERM or SIGINT.
pub async fn signal() {
    armed().await
}

/// The handlers are in place when this returns (inside a runtime); the
/// future completes on SIGTERM or SIGINT.
pub fn armed() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}

fn both() -> SigSet {
    let mut s = SigSet::empty();
    s.add(Signal::SIGTERM);
    s.add(Signal::SIGINT);
    s
}

/// Holds SIGTERM and SIGINT back (pending, not lost) until `release`:
/// for the moment between a promise to the caller (the client's printed
/// table) and the handlers being in place.
pub fn hold() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&both()), None);
}

pub fn release() {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&both()), None);
}
