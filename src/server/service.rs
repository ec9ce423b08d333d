//! The server's loop: one datagram socket (injected, so tests bind their
//! own), batches drained and answered, the outbox flushed, leases expired,
//! metrics written, until the shutdown future resolves.

use std::future::Future;

use tokio::net::UnixDatagram;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::dgram::{self, Received};
use crate::protocol::MAX_DATAGRAM;
use crate::server::outbox::Outbox;

use super::*;

/// Serves on an already-bound socket until `shutdown` completes.
pub async fn run(
    socket: UnixDatagram,
    mut server: Server,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    dgram::enable_credentials(&socket)?;
    let refusal_share = match dgram::set_send_buffer(&socket, SEND_BUFFER) {
        Ok(granted) => granted / 4,
        Err(e) => {
            warn!("cannot read the send buffer size: {e}");
            // The kernel's usual default (wmem_default 212992) / 4.
            53_248
        }
    };
    tokio::pin!(shutdown);
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut metrics_tick = server.metrics_interval().map(crate::timer::ticker);
    loop {
        let deadline = server.next_deadline();
        let retry = server.outbox.next_deadline();
        let log_due = server.refusal_log.window_end();
        tokio::select! {
            _ = &mut shutdown => {
                info!("shutting down");
                server.write_metrics();
                return Ok(());
            }
            _ = tick_opt(&mut metrics_tick) => {
                server.write_metrics();
            }
            _ = crate::timer::sleep_until_opt(deadline) => {
                server.expire(Instant::now());
            }
            _ = crate::timer::sleep_until_opt(retry) => {
                server.outbox.flush(&socket, Instant::now());
            }
            _ = crate::timer::sleep_until_opt(log_due) => {
                server.flush_refusal_log(Instant::now());
            }
            ready = socket.readable() => {
                ready?;
                let batch = drain(&socket, &mut buf);
                if batch.is_empty() {
                    continue;
                }
                let answers = server.handle_batch(&batch);
                let now = Instant::now();
                for (dg, answer) in batch.iter().zip(answers) {
                    send_reply(&socket, &mut server.outbox, dg, answer, now, refusal_share);
                }
            }
        }
    }
}

async fn tick_opt(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn drain(socket: &UnixDatagram, buf: &mut [u8]) -> Vec<Incoming> {
    let mut batch = Vec::new();
    while batch.len() < MAX_BATCH {
        match dgram::try_recv_with_credentials(socket, buf) {
            Ok(Received { len, from, peer }) => batch.push(Incoming {
                bytes: buf[..len.min(buf.len())].to_vec(),
                len,
                from,
                peer,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => {
                warn!("receive failed: {e}");
                break;
            }
        }
    }
    batch
}

/// Sends at once; an answer to a permitted sender whose queue is full waits
/// in the bounded outbox, any other is dropped and counted.
fn send_reply(
    socket: &UnixDatagram,
    outbox: &mut Outbox,
    dg: &Incoming,
    answer: Answer,
    now: Instant,
    refusal_share: usize,
) {
    let Some(to) = dg.from else {
        debug!("sender has no address; reply not sent");
        return;
    };
    if !answer.may_wait && dgram::unsent_bytes(socket).is_ok_and(|n| n >= refusal_share) {
        outbox.dropped.refused_sender += 1;
        return;
    }
    let bytes = answer.reply.encode();
    match dgram::try_send_to(socket, &bytes, &to) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            if answer.may_wait {
                outbox.push(to, bytes, now);
            } else {
                outbox.dropped.refused_sender += 1;
            }
        }
        Err(e) => debug!(to = %dg.describe(), "reply not sent: {e}"),
    }
}
