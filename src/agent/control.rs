//! The control socket's server side: connections accepted from root only
//! (SO_PEERCRED; the directory already keeps everyone else out), one
//! request each, read within a deadline, handed to the agent's loop, and
//! the loop's answer written back. A peer that sends nothing, too much or
//! garbage is dropped; it holds up nobody else.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::control::{Reply, Request, MAX_MESSAGE};

/// A request for the loop, with where its answer goes.
pub struct Asked {
    pub req: Request,
    pub reply: oneshot::Sender<Reply>,
}

/// A peer has this long to send its request.
const READ_DEADLINE: Duration = Duration::from_secs(5);
/// And the answer this long to go out.
const WRITE_DEADLINE: Duration = Duration::from_secs(5);

/// Accepts until the listener fails (which ends the agent). A passing
/// error (out of file descriptors, a peer gone before it was accepted) is
/// waited out, not the end.
pub async fn serve(l: UnixListener, tx: mpsc::UnboundedSender<Asked>) -> std::io::Result<()> {
    let mut passing = 0u32;
    loop {
        let s = match l.accept().await {
            Ok((s, _)) => {
                passing = 0;
                s
            }
            Err(e)
                if passing < 100
                    && e.raw_os_error()
                        .is_some_and(|c| c != libc::EBADF && c != libc::EINVAL) =>
            {
                passing += 1;
                tracing::warn!("control socket: {e}; accepting again shortly");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let tx = tx.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = one(s, tx).await {
                debug!("control connection: {e}");
            }
        });
    }
}

async fn one(s: UnixStream, tx: mpsc::UnboundedSender<Asked>) -> std::io::Result<()> {
    let root = s.peer_cred().is_ok_and(|c| c.uid() == 0);
    if !root {
        // The directory is root's alone; someone got in anyway.
        warn!(peer = ?s.peer_cred().ok(), "control connection from a process not running as root: closed");
        return Ok(());
    }
    let mut r = BufReader::new(s);
    let mut line = Vec::new();
    let read = async {
        let mut limited = (&mut r).take(MAX_MESSAGE as u64);
        limited.read_until(b'\n', &mut line).await
    };
    match tokio::time::timeout(READ_DEADLINE, read).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return Ok(()),
    }
    let reply = match serde_json::from_slice::<Request>(&line) {
        Ok(req) => {
            let (reply, answer) = oneshot::channel();
            if tx.send(Asked { req, reply }).is_err() {
                return Ok(());
            }
            // The loop answers every request, at the latest at its own
            // deadline for the address.
            answer
                .await
                .unwrap_or_else(|_| Reply::error("the agent is stopping"))
        }
        Err(e) => Reply::error(format!("not a request: {e}")),
    };
    let mut out = serde_json::to_vec(&reply).unwrap_or_default();
    out.push(b'\n');
    let mut s = r.into_inner();
    let _ = tokio::time::timeout(WRITE_DEADLINE, s.write_all(&out)).await;
    Ok(())
}
