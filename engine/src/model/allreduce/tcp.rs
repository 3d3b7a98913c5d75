//! The multi-process backend: rank 0 listens at the rendezvous address, every other rank
//! connects to it; each reduction sends the buffers to rank 0, which sums them in f64 (rank
//! order, so every run of one world size gets the same bits) and sends the mean back.
//!
//! Messages are a kind byte, then for data a buffer count, each buffer's length and its f32
//! values (little-endian), or for an abort its reason as UTF-8. A closed connection is a failed
//! rank: rank 0 then stops every other rank instead of letting them wait.

use super::{AllReduce, ReduceError};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const DATA: u8 = 0;
const ABORT: u8 = 1;
/// More values than any buffer holds: a corrupt length is an error, not an allocation.
const MAX_VALUES: u64 = 1 << 34;

/// One rank of a group joined over TCP.
pub struct TcpRank {
    rank: usize,
    world: usize,
    timeout: Duration,
    /// Rank 0: the connection of each other rank (index `r - 1`); other ranks: rank 0's.
    peers: Mutex<Vec<TcpStream>>,
    aborted: Mutex<Option<ReduceError>>,
}

impl TcpRank {
    /// Joins the group of `world` ranks as `rank`: rank 0 listens at `addr` and waits for the
    /// others, each other rank connects to it (retrying until `timeout`, so the processes may
    /// start in any order). `timeout` also bounds each later wait for the other ranks.
    pub fn join(
        addr: &str,
        world: usize,
        rank: usize,
        timeout: Duration,
    ) -> Result<Self, ReduceError> {
        let fail = |msg: String| ReduceError::Connection { rank, msg };
        if world == 0 || rank >= world {
            return Err(fail(format!("rank {rank} is outside a world of {world}")));
        }
        let deadline = Instant::now() + timeout;
        let peers = if rank == 0 {
            let listener = TcpListener::bind(addr)
                .map_err(|e| fail(format!("cannot listen at {addr}: {e}")))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| fail(e.to_string()))?;
            let mut by_rank: Vec<Option<TcpStream>> = (1..world).map(|_| None).collect();
            while by_rank.iter().any(Option::is_none) {
                match listener.accept() {
                    Ok((s, _)) => {
                        s.set_nonblocking(false).map_err(|e| fail(e.to_string()))?;
                        configure(&s, timeout).map_err(|e| fail(e.to_string()))?;
                        let mut r = [0u8; 8];
                        (&s).read_exact(&mut r)
                            .map_err(|e| fail(format!("handshake: {e}")))?;
                        let (peer, peer_world) = (
                            u32::from_le_bytes([r[0], r[1], r[2], r[3]]) as usize,
                            u32::from_le_bytes([r[4], r[5], r[6], r[7]]) as usize,
                        );
                        if peer_world != world || peer == 0 || peer >= world {
                            return Err(fail(format!(
                                "a process joined as rank {peer} of {peer_world}; this group has {world} ranks"
                            )));
                        }
                        if by_rank[peer - 1].replace(s).is_some() {
                            return Err(fail(format!("two processes joined as rank {peer}")));
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            let missing: Vec<String> = by_rank
                                .iter()
                                .enumerate()
                                .filter(|(_, s)| s.is_none())
                                .map(|(i, _)| (i + 1).to_string())
                                .collect();
                            return Err(fail(format!(
                                "ranks {} did not join at {addr} within {} s",
                                missing.join(", "),
                                timeout.as_secs()
                            )));
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(e) => return Err(fail(format!("accept: {e}"))),
                }
            }
            by_rank.into_iter().flatten().collect()
        } else {
            let target = addr
                .to_socket_addrs()
                .map_err(|e| fail(format!("rendezvous {addr}: {e}")))?
                .next()
                .ok_or_else(|| fail(format!("rendezvous {addr}: no address")))?;
            let s = loop {
                match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() > deadline => {
                        return Err(fail(format!(
                            "cannot reach rank 0 at {addr} within {} s: {e}",
                            timeout.as_secs()
                        )))
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            };
            configure(&s, timeout).map_err(|e| fail(e.to_string()))?;
            let mut hello = (rank as u32).to_le_bytes().to_vec();
            hello.extend((world as u32).to_le_bytes());
            (&s).write_all(&hello)
                .map_err(|e| fail(format!("handshake: {e}")))?;
            vec![s]
        };
        Ok(Self {
            rank,
            world,
            timeout,
            peers: Mutex::new(peers),
            aborted: Mutex::new(None),
        })
    }

    fn io(&self, what: &str, e: std::io::Error) -> ReduceError {
        let msg = match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                return ReduceError::Timeout {
                    rank: self.rank,
                    secs: self.timeout.as_secs(),
                }
            }
            std::io::ErrorKind::UnexpectedEof
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::BrokenPipe => format!("{what}: the process ended"),
            _ => format!("{what}: {e}"),
        };
        ReduceError::Connection {
            rank: self.rank,
            msg,
        }
    }

    /// Records the group's first error and returns the one to report.
    fn stop(&self, e: ReduceError) -> ReduceError {
        let mut a = self.aborted.lock().unwrap_or_else(|p| p.into_inner());
        a.get_or_insert(e).clone()
    }

    fn reduce(&self, peers: &mut [TcpStream], bufs: &mut [Vec<f32>]) -> Result<(), ReduceError> {
        if self.rank != 0 {
            let s = &mut peers[0];
            send_data(s, bufs).map_err(|e| self.io("sending to rank 0", e))?;
            return match read_message(s).map_err(|e| self.io("waiting for rank 0", e))? {
                Message::Data(mean) => copy_into(bufs, &mean, self.rank),
                Message::Abort(e) => Err(e),
            };
        }
        let mut sum: Vec<Vec<f64>> = bufs
            .iter()
            .map(|b| b.iter().map(|&x| x as f64).collect())
            .collect();
        for (i, s) in peers.iter_mut().enumerate() {
            let peer = i + 1;
            let got = match read_message(s).map_err(|e| self.io(&format!("rank {peer}"), e))? {
                Message::Data(d) => d,
                Message::Abort(e) => return Err(e),
            };
            if got.len() != sum.len() {
                return Err(ReduceError::Mismatch {
                    rank: peer,
                    index: got.len(),
                    len: 0,
                    expected: sum.len(),
                });
            }
            for (index, (a, b)) in sum.iter_mut().zip(&got).enumerate() {
                if a.len() != b.len() {
                    return Err(ReduceError::Mismatch {
                        rank: peer,
                        index,
                        len: b.len(),
                        expected: a.len(),
                    });
                }
                for (x, &y) in a.iter_mut().zip(b) {
                    *x += y as f64;
                }
            }
        }
        let inv = 1.0 / self.world as f64;
        for (b, s) in bufs.iter_mut().zip(&sum) {
            for (x, &y) in b.iter_mut().zip(s) {
                *x = (y * inv) as f32;
            }
        }
        for (i, s) in peers.iter_mut().enumerate() {
            send_data(s, bufs).map_err(|e| self.io(&format!("rank {}", i + 1), e))?;
        }
        Ok(())
    }
}

impl AllReduce for TcpRank {
    fn world_size(&self) -> usize {
        self.world
    }

    fn rank(&self) -> usize {
        self.rank
    }

    fn all_reduce_mean(&self, bufs: &mut [Vec<f32>]) -> Result<(), ReduceError> {
        if let Some(e) = self
            .aborted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Err(e);
        }
        if self.world == 1 {
            return Ok(());
        }
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let r = self.reduce(&mut peers, bufs);
        drop(peers);
        r.map_err(|e| {
            let e = self.stop(e);
            // Rank 0 tells every other rank; another rank's failure reaches rank 0 as an
            // abort or a closed connection.
            self.send_abort(&e.to_string());
            e
        })
    }

    fn abort(&self, why: &str) {
        self.stop(ReduceError::Aborted {
            rank: self.rank,
            why: why.to_string(),
        });
        self.send_abort(why);
    }
}

impl TcpRank {
    fn send_abort(&self, why: &str) {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut msg = vec![ABORT];
        msg.extend((self.rank as u32).to_le_bytes());
        msg.extend((why.len() as u32).to_le_bytes());
        msg.extend(why.as_bytes());
        for s in peers.iter_mut() {
            let _ = s.write_all(&msg);
            let _ = s.flush();
        }
    }
}

impl Drop for TcpRank {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.abort("its thread panicked");
        }
        for s in self.peers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

fn configure(s: &TcpStream, timeout: Duration) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
    s.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
}

fn send_data(s: &mut TcpStream, bufs: &[Vec<f32>]) -> std::io::Result<()> {
    let mut w = BufWriter::with_capacity(1 << 16, s);
    w.write_all(&[DATA])?;
    w.write_all(&(bufs.len() as u64).to_le_bytes())?;
    for b in bufs {
        w.write_all(&(b.len() as u64).to_le_bytes())?;
    }
    for b in bufs {
        for x in b {
            w.write_all(&x.to_le_bytes())?;
        }
    }
    w.flush()
}

enum Message {
    Data(Vec<Vec<f32>>),
    Abort(ReduceError),
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn read_u32(r: &mut impl Read) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_le_bytes(b))
}

fn read_message(s: &mut TcpStream) -> std::io::Result<Message> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut r = BufReader::with_capacity(1 << 16, s);
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind)?;
    match kind[0] {
        DATA => {
            let n = read_u64(&mut r)?;
            if n > 1 << 20 {
                return Err(bad("too many buffers"));
            }
            let lens: Vec<u64> = (0..n).map(|_| read_u64(&mut r)).collect::<Result<_, _>>()?;
            if lens.iter().sum::<u64>() > MAX_VALUES {
                return Err(bad("buffers too large"));
            }
            let mut out = Vec::with_capacity(n as usize);
            for len in lens {
                let mut bytes = vec![0u8; len as usize * 4];
                r.read_exact(&mut bytes)?;
                out.push(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                );
            }
            Ok(Message::Data(out))
        }
        ABORT => {
            let rank = read_u32(&mut r)? as usize;
            let len = read_u32(&mut r)?.min(1 << 16) as usize;
            let mut why = vec![0u8; len];
            r.read_exact(&mut why)?;
            Ok(Message::Abort(ReduceError::Aborted {
                rank,
                why: String::from_utf8_lossy(&why).into_owned(),
            }))
        }
        _ => Err(bad("unknown message")),
    }
}

fn copy_into(bufs: &mut [Vec<f32>], mean: &[Vec<f32>], rank: usize) -> Result<(), ReduceError> {
    if mean.len() != bufs.len()
        || mean
            .iter()
            .zip(bufs.iter())
            .any(|(m, b)| m.len() != b.len())
    {
        return Err(ReduceError::Connection {
            rank,
            msg: "rank 0 sent back buffers of other sizes".into(),
        });
    }
    for (b, m) in bufs.iter_mut().zip(mean) {
        b.copy_from_slice(m);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn free_addr() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    fn group(n: usize, timeout: Duration) -> Vec<TcpRank> {
        let addr = free_addr();
        let handles: Vec<_> = (0..n)
            .map(|r| {
                let addr = addr.clone();
                std::thread::spawn(move || TcpRank::join(&addr, n, r, timeout).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    }

    #[test]
    fn ranks_over_tcp_get_the_mean_in_rank_order() {
        let ranks = group(3, Duration::from_secs(20));
        let handles: Vec<_> = ranks
            .into_iter()
            .map(|g| {
                std::thread::spawn(move || {
                    let r = g.rank() as f32;
                    let mut bufs = vec![vec![r, 2.0 * r, 1.0], vec![10.0 + r]];
                    g.all_reduce_mean(&mut bufs).unwrap();
                    // a second round on the same connections
                    let mut again = vec![vec![r * r]];
                    g.all_reduce_mean(&mut again).unwrap();
                    (bufs, again)
                })
            })
            .collect();
        for h in handles {
            let (bufs, again) = h.join().unwrap();
            assert_eq!(bufs, vec![vec![1.0, 2.0, 1.0], vec![11.0]]);
            assert_eq!(again, vec![vec![5.0 / 3.0]]);
        }
    }

    #[test]
    fn a_rank_that_ends_stops_the_others_and_a_missing_rank_times_out() {
        let mut ranks = group(3, Duration::from_secs(20));
        let last = ranks.pop().unwrap();
        drop(last);
        let handles: Vec<_> = ranks
            .into_iter()
            .map(|g| {
                std::thread::spawn(move || {
                    let t = Instant::now();
                    let e = g.all_reduce_mean(&mut [vec![1.0]]).unwrap_err();
                    (e, t.elapsed())
                })
            })
            .collect();
        for h in handles {
            let (e, took) = h.join().unwrap();
            assert!(took < Duration::from_secs(10), "{took:?}");
            assert!(
                matches!(
                    e,
                    ReduceError::Connection { .. } | ReduceError::Aborted { .. }
                ),
                "{e}"
            );
        }
        let e = TcpRank::join(&free_addr(), 2, 0, Duration::from_millis(300))
            .err()
            .unwrap();
        assert!(e.to_string().contains("ranks 1 did not join"), "{e}");
    }

    #[test]
    fn an_abort_reaches_every_rank_with_its_reason() {
        let ranks = group(2, Duration::from_secs(20));
        let mut it = ranks.into_iter();
        let (r0, r1) = (it.next().unwrap(), it.next().unwrap());
        let h = std::thread::spawn(move || r0.all_reduce_mean(&mut [vec![1.0]]).unwrap_err());
        r1.abort("out of memory");
        let e = h.join().unwrap();
        assert!(e.to_string().contains("out of memory"), "{e}");
        assert!(r1.all_reduce_mean(&mut [vec![1.0]]).is_err());
    }
}
