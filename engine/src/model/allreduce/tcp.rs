//! The multi-process backend: rank 0 listens at the rendezvous address, every other rank
//! connects to it; each reduction sends the buffers to rank 0, which sums them in f64 (rank
//! order, so every run of one world size gets the same bits) and sends the mean back.
//!
//! Messages are a kind byte, then for data a buffer count, each buffer's length and its f32
//! values (little-endian), or for an abort its reason as UTF-8. A receiver knows the lengths it
//! expects (its own buffers'), so a message of other lengths is an error before anything is
//! allocated for it. A closed connection is a failed rank: rank 0 then stops every other rank
//! instead of letting them wait. Joining checks the run's fingerprint: processes started with
//! other settings refuse to train together.

use super::{AllReduce, ReduceError};
use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const DATA: u8 = 0;
const ABORT: u8 = 1;
/// The longest abort reason sent (a longer one is cut).
const MAX_REASON: usize = 4096;
/// The first bytes of a rank's introduction: anything else connecting is not a rank.
const MAGIC: &[u8; 8] = b"SKGRANK1";
/// How long a connection may take to introduce itself before it is dropped.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// A connection to another rank: one reader for its whole life (a message read ahead is kept
/// for the next read), and the stream to write to.
struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Conn {
    fn new(s: TcpStream) -> std::io::Result<Self> {
        Ok(Self {
            writer: s.try_clone()?,
            reader: BufReader::with_capacity(1 << 16, s),
        })
    }
}

/// One rank of a group joined over TCP.
pub struct TcpRank {
    rank: usize,
    world: usize,
    timeout: Duration,
    /// Rank 0: the connection of each other rank (index `r - 1`); other ranks: rank 0's.
    peers: Mutex<Vec<Conn>>,
    aborted: Mutex<Option<ReduceError>>,
}

impl TcpRank {
    /// Joins the group of `world` ranks as `rank`: rank 0 listens at `addr` and waits for the
    /// others, each other rank connects to it (retrying until `timeout`, so the processes may
    /// start in any order). `timeout` also bounds each later wait for the other ranks.
    /// `fingerprint` identifies the run's settings: every rank must pass the same.
    pub fn join(
        addr: &str,
        world: usize,
        rank: usize,
        timeout: Duration,
        fingerprint: u64,
    ) -> Result<Self, ReduceError> {
        let fail = |msg: String| ReduceError::Connection { rank, msg };
        if world == 0 || rank >= world || world > u32::MAX as usize {
            return Err(fail(format!("rank {rank} is outside a world of {world}")));
        }
        let deadline = Instant::now()
            .checked_add(timeout)
            .ok_or_else(|| fail(format!("a wait of {} s is too long", timeout.as_secs())))?;
        let peers = if rank == 0 {
            let listener = TcpListener::bind(addr)
                .map_err(|e| fail(format!("cannot listen at {addr}: {e}")))?;
            listener
                .set_nonblocking(true)
                .map_err(|e| fail(e.to_string()))?;
            let mut by_rank: Vec<Option<Conn>> = (1..world).map(|_| None).collect();
            while by_rank.iter().any(Option::is_none) {
                match listener.accept() {
                    Ok((s, _)) => {
                        // A connection that is not one of ours (a port scan, a stray client)
                        // is dropped; one of ours with other settings stops the group.
                        let Ok(Some((peer, peer_world, peer_print))) = handshake(&s, timeout)
                        else {
                            continue;
                        };
                        if peer_world != world || peer == 0 || peer >= world {
                            return Err(fail(format!(
                                "a process joined as rank {peer} of {peer_world}; this group has {world} ranks"
                            )));
                        }
                        if peer_print != fingerprint {
                            return Err(fail(format!(
                                "rank {peer} was started with other settings (config, phase or data) than rank 0"
                            )));
                        }
                        let conn = Conn::new(s).map_err(|e| fail(e.to_string()))?;
                        if by_rank[peer - 1].replace(conn).is_some() {
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
            let mut hello = MAGIC.to_vec();
            hello.extend((rank as u32).to_le_bytes());
            hello.extend((world as u32).to_le_bytes());
            hello.extend(fingerprint.to_le_bytes());
            (&s).write_all(&hello)
                .map_err(|e| fail(format!("handshake: {e}")))?;
            vec![Conn::new(s).map_err(|e| fail(e.to_string()))?]
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

    fn reduce(&self, peers: &mut [Conn], bufs: &mut [Vec<f32>]) -> Result<(), ReduceError> {
        let lens: Vec<usize> = bufs.iter().map(Vec::len).collect();
        if self.rank != 0 {
            let c = &mut peers[0];
            send_data(&mut c.writer, bufs).map_err(|e| self.io("sending to rank 0", e))?;
            let mean = match read_message(&mut c.reader, &lens, 0)
                .map_err(|e| self.io("waiting for rank 0", e))?
            {
                Message::Data(mean) => mean,
                Message::Abort(e) => return Err(e),
                Message::Lengths(got) => {
                    return Err(ReduceError::Connection {
                        rank: self.rank,
                        msg: format!("rank 0 sent back {} buffers of other sizes", got.len()),
                    })
                }
            };
            for (b, m) in bufs.iter_mut().zip(mean) {
                b.copy_from_slice(&m);
            }
            return Ok(());
        }
        let mut sum = super::widen(bufs);
        for (i, c) in peers.iter_mut().enumerate() {
            let peer = i + 1;
            let got = read_message(&mut c.reader, &lens, peer)
                .map_err(|e| self.io(&format!("rank {peer}"), e))?;
            match got {
                Message::Data(d) => super::accumulate(&mut sum, &d, peer)?,
                Message::Abort(e) => return Err(e),
                Message::Lengths(got) => {
                    super::check_lengths(&sum, got.into_iter(), peer)?;
                }
            }
        }
        let mean = super::mean_of(&sum, self.world);
        for (b, m) in bufs.iter_mut().zip(&mean) {
            b.copy_from_slice(m);
        }
        for (i, c) in peers.iter_mut().enumerate() {
            send_data(&mut c.writer, bufs).map_err(|e| self.io(&format!("rank {}", i + 1), e))?;
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
        let mut cut = why.len().min(MAX_REASON);
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        let why = &why[..cut];
        let mut msg = vec![ABORT];
        msg.extend((self.rank as u32).to_le_bytes());
        msg.extend((why.len() as u32).to_le_bytes());
        msg.extend(why.as_bytes());
        for c in peers.iter_mut() {
            let _ = c.writer.write_all(&msg);
            let _ = c.writer.flush();
        }
    }
}

impl Drop for TcpRank {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.abort("its thread panicked");
        }
        for c in self.peers.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = c.writer.shutdown(Shutdown::Both);
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

/// A connection's introduction: its rank, world size and fingerprint; `None` when it sent
/// something else or nothing within [`HANDSHAKE`].
fn handshake(s: &TcpStream, timeout: Duration) -> std::io::Result<Option<(usize, usize, u64)>> {
    s.set_nonblocking(false)?;
    configure(s, HANDSHAKE.min(timeout))?;
    let mut r = [0u8; 24];
    if (&*s).read_exact(&mut r).is_err() || &r[..8] != MAGIC {
        return Ok(None);
    }
    configure(s, timeout)?;
    let word = |i: usize| u32::from_le_bytes([r[i], r[i + 1], r[i + 2], r[i + 3]]) as usize;
    let mut print = [0u8; 8];
    print.copy_from_slice(&r[16..24]);
    Ok(Some((word(8), word(12), u64::from_le_bytes(print))))
}

enum Message {
    Data(Vec<Vec<f32>>),
    Abort(ReduceError),
    /// Data of other lengths than expected (read past, nothing kept).
    Lengths(Vec<usize>),
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

/// The next message from rank `from`, whose data buffers must have the lengths `expected`.
fn read_message(
    r: &mut BufReader<TcpStream>,
    expected: &[usize],
    from: usize,
) -> std::io::Result<Message> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind)?;
    match kind[0] {
        DATA => {
            let n = read_u64(r)?;
            if n != expected.len() as u64 {
                // The lengths are not read: the stream is out of step after this and the
                // group stops.
                return Ok(Message::Lengths(vec![0; n.min(1 << 20) as usize]));
            }
            let lens: Vec<u64> = (0..n).map(|_| read_u64(r)).collect::<Result<_, _>>()?;
            if lens.iter().zip(expected).any(|(&a, &b)| a != b as u64) {
                return Ok(Message::Lengths(
                    lens.iter()
                        .map(|&l| l.min(usize::MAX as u64) as usize)
                        .collect(),
                ));
            }
            let mut out = Vec::with_capacity(expected.len());
            for &len in expected {
                let mut bytes = vec![0u8; len * 4];
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
            let rank = read_u32(r)? as usize;
            let len = read_u32(r)? as usize;
            if len > MAX_REASON {
                return Err(bad("abort reason too long"));
            }
            let mut why = vec![0u8; len];
            r.read_exact(&mut why)?;
            Ok(Message::Abort(ReduceError::Aborted {
                rank,
                why: String::from_utf8_lossy(&why).into_owned(),
            }))
        }
        _ => Err(bad(&format!("an unknown message from rank {from}"))),
    }
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
                std::thread::spawn(move || TcpRank::join(&addr, n, r, timeout, 7).unwrap())
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
        let e = TcpRank::join(&free_addr(), 2, 0, Duration::from_millis(300), 7)
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

    #[test]
    fn a_stray_connection_is_ignored_and_a_rank_with_other_settings_is_refused() {
        let addr = free_addr();
        let a = addr.clone();
        let r0 = std::thread::spawn(move || TcpRank::join(&a, 2, 0, Duration::from_secs(20), 7));
        let connect = || loop {
            if let Ok(s) = TcpStream::connect(&addr) {
                break s;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stray = connect();
        stray
            .write_all(b"GET / HTTP/1.0\r\n\r\nHost: x\r\n")
            .unwrap();
        let a = addr.clone();
        let r1 = std::thread::spawn(move || TcpRank::join(&a, 2, 1, Duration::from_secs(20), 7));
        let (r0, r1) = (r0.join().unwrap().unwrap(), r1.join().unwrap().unwrap());
        let h = std::thread::spawn(move || {
            let mut b = vec![vec![2.0f32]];
            r1.all_reduce_mean(&mut b).map(|_| b)
        });
        let mut b = vec![vec![4.0f32]];
        r0.all_reduce_mean(&mut b).unwrap();
        assert_eq!(
            (b, h.join().unwrap().unwrap()),
            (vec![vec![3.0]], vec![vec![3.0]])
        );

        let addr = free_addr();
        let a = addr.clone();
        let r0 = std::thread::spawn(move || TcpRank::join(&a, 2, 0, Duration::from_secs(20), 7));
        let _r1 = TcpRank::join(&addr, 2, 1, Duration::from_secs(20), 8);
        let e = r0.join().unwrap().err().unwrap();
        assert!(e.to_string().contains("other settings"), "{e}");
    }

    #[test]
    fn buffers_of_other_lengths_are_an_error_not_an_allocation() {
        let ranks = group(2, Duration::from_secs(20));
        let mut it = ranks.into_iter();
        let (r0, r1) = (it.next().unwrap(), it.next().unwrap());
        let h = std::thread::spawn(move || r1.all_reduce_mean(&mut [vec![1.0; 3]]));
        let e = r0.all_reduce_mean(&mut [vec![1.0; 2]]).unwrap_err();
        assert!(matches!(e, ReduceError::Mismatch { rank: 1, .. }), "{e}");
        assert!(h.join().unwrap().is_err());
    }
}
