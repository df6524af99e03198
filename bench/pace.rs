//! `pace`: an open-loop HTTP/1.1 load generator for `bench/run.py`.
//!
//! wrk keeps every connection busy: each request is sent the moment the
//! answer to the one before arrives, so the rate is whatever the slower of
//! server and client allows, and a latency percentile mixes the server's
//! time with the client's own queue. Comparing two servers' p99 that way
//! compares them at two different rates, with the faster one driving wrk
//! harder. `pace` instead sends at one fixed rate, the same for both
//! servers: each connection has requests due at even intervals (the rate
//! split over the connections, their starts staggered), and a request's
//! latency runs from when it was *due*, not when it went out, so a stall
//! that delays sending counts against the server (as wrk2 measures; Gil
//! Tene's "coordinated omission").
//!
//! One thread, spinning on a non-blocking poll so sends leave within
//! microseconds of their time: run it on a CPU of its own (taskset). It
//! prints one JSON line: the rate reached, latency percentiles in µs, the
//! client's own lateness (from when a request was due, or its connection
//! free if later, to when it went out: if that grows, the client was the
//! limit), how busy the client was (the share of the time it spent sending
//! and receiving rather than waiting: near 1, its own queue is in every
//! latency), and answers that were not 2xx/3xx.
//!
//! With `--closed` it is a closed loop instead, as wrk is: each connection
//! sends its next request as soon as the answer to the one before is in,
//! and latency runs from when a request went out. That is wrk's measure
//! from a client that costs less per request than wrk with a Lua script,
//! so whether a closed-loop tail is the server's or wrk's can be told apart.
//!
//! ```sh
//! cargo build --release --example pace
//! taskset -c 1 target/release/examples/pace --addr 127.0.0.1:8080 --rate 50000 \
//!     --connections 16 --seconds 5 --header 'PRIVATE-TOKEN: ...' --target /health
//! taskset -c 1 target/release/examples/pace --addr 127.0.0.1:8080 --closed \
//!     --connections 16 --seconds 5 --header 'PRIVATE-TOKEN: ...' --target /health
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

/// Send requests at a fixed rate and measure their latency from when each
/// was due.
#[derive(Parser)]
struct Args {
    /// The server, as IP:PORT.
    #[arg(long)]
    addr: SocketAddr,
    /// Requests per second, over all connections together.
    #[arg(long, required_unless_present = "closed", conflicts_with = "closed")]
    rate: Option<f64>,
    /// A closed loop (as wrk): each connection sends its next request as
    /// soon as its answer is in; latency runs from when a request went out.
    #[arg(long)]
    closed: bool,
    /// Keep-alive connections; each carries one request at a time.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// How long to send, in seconds.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// A header sent with every request, as `Name: value` (repeatable).
    #[arg(long)]
    header: Vec<String>,
    /// The request target (path and query), or `@FILE`: one target per
    /// line, each request taking one of them at random.
    #[arg(long)]
    target: String,
}

/// One connection: when its next request is due, when the one in flight
/// was due, and what has arrived of its answer.
struct Conn {
    stream: TcpStream,
    next_due: Instant,
    in_flight: Option<Instant>,
    free_since: Instant,
    answer: Vec<u8>,
}

/// How much of `buf` one complete answer takes, and its status; `None`
/// while the answer is incomplete.
fn complete(buf: &[u8]) -> Result<Option<u16>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..end])
        .map_err(|_| "an answer's head is not UTF-8".to_string())?;
    let status: u16 = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {:?}", head.lines().next()))?;
    let mut length = 0;
    for line in head.lines().skip(1) {
        let (name, value) = line.split_once(':').unwrap_or((line, ""));
        if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err("a chunked answer: pace reads only Content-Length bodies".into());
        }
        if name.eq_ignore_ascii_case("content-length") {
            length = value
                .trim()
                .parse()
                .map_err(|_| format!("bad Content-Length: {value:?}"))?;
        }
    }
    let total = end + 4 + length;
    match buf.len().cmp(&total) {
        std::cmp::Ordering::Less => Ok(None),
        std::cmp::Ordering::Equal => Ok(Some(status)),
        std::cmp::Ordering::Greater => {
            Err("bytes after the answer to the only request in flight".into())
        }
    }
}

/// A small, fast generator for picking targets (xorshift64*).
struct Pick(u64);

impl Pick {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1] as f64 / 1000.0
}

fn run(args: Args) -> Result<String, String> {
    let positive = |x: f64| x.is_finite() && x > 0.0;
    // A closed loop has no rate: every request is due at once.
    let rate = args.rate.unwrap_or(f64::INFINITY);
    if !(args.closed || positive(rate)) || args.connections == 0 || !positive(args.seconds) {
        return Err("--rate, --connections and --seconds must be positive".into());
    }
    if args.seconds > 3600.0
        || (!args.closed && rate * args.seconds > 1e9)
        || args.connections as f64 / rate > 3600.0
    {
        return Err(
            "at most an hour, 10^9 requests, and a request per connection at least hourly".into(),
        );
    }
    let targets: Vec<String> = match args.target.strip_prefix('@') {
        Some(file) => std::fs::read_to_string(file)
            .map_err(|e| format!("{file}: {e}"))?
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        None => vec![args.target.clone()],
    };
    if targets.is_empty() {
        return Err("no targets".into());
    }
    let mut headers = String::new();
    for h in &args.header {
        headers.push_str(h);
        headers.push_str("\r\n");
    }
    let requests: Vec<Vec<u8>> = targets
        .iter()
        .map(|t| format!("GET {t} HTTP/1.1\r\nHost: {}\r\n{headers}\r\n", args.addr).into_bytes())
        .collect();

    let mut poll = Poll::new().map_err(|e| e.to_string())?;
    let interval = Duration::from_secs_f64(args.connections as f64 / rate);
    let start = Instant::now() + Duration::from_millis(50);
    let stop = start + Duration::from_secs_f64(args.seconds);
    let mut conns = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let std_stream =
            std::net::TcpStream::connect(args.addr).map_err(|e| format!("{}: {e}", args.addr))?;
        std_stream.set_nodelay(true).map_err(|e| e.to_string())?;
        std_stream
            .set_nonblocking(true)
            .map_err(|e| e.to_string())?;
        let mut stream = TcpStream::from_std(std_stream);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(|e| e.to_string())?;
        conns.push(Conn {
            stream,
            next_due: start + interval.mul_f64(i as f64 / args.connections as f64),
            in_flight: None,
            free_since: start,
            answer: Vec::with_capacity(64 * 1024),
        });
    }

    let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
    // Room for the answers expected (a closed loop's count is not known
    // before: a first guess, grown as needed).
    let expected = if args.closed {
        1e6
    } else {
        rate * args.seconds * 1.1
    };
    let mut latencies: Vec<u64> = Vec::with_capacity(expected as usize);
    let mut send_lag: Vec<u64> = Vec::with_capacity(latencies.capacity());
    let mut not_ok = 0u64;
    let mut events = Events::with_capacity(1024);
    let mut chunk = vec![0u8; 256 * 1024];
    let give_up = stop + Duration::from_secs(10);
    // The client's own load: time spent in rounds of the loop that sent or
    // received something, against the time from the start to the last
    // answer. Near 1, the client itself was the limit and its queue is
    // part of every latency.
    let (mut working, mut round_began, mut round_worked) = (Duration::ZERO, start, false);
    loop {
        let now = Instant::now();
        if round_worked {
            working += now.saturating_duration_since(round_began);
        }
        round_began = now;
        round_worked = false;
        let mut busy = false;
        for conn in conns.iter_mut() {
            // Whether this connection's next request is due now, and
            // whether it has any still to send.
            let (due, more) = match args.closed {
                true => (start <= now, now < stop),
                false => (conn.next_due <= now, conn.next_due < stop),
            };
            if conn.in_flight.is_none() && due && more {
                let request = &requests[if requests.len() == 1 {
                    0
                } else {
                    pick.below(requests.len())
                }];
                // A closed loop's latency, and the client's lateness, run
                // from this send, not from the round's start: a round that
                // sends on many connections takes a while, and the last
                // would be charged for the sends before it.
                let sent = Instant::now();
                match conn.stream.write(request) {
                    Ok(n) if n == request.len() => {}
                    Ok(_) => {
                        return Err("a request did not fit the socket's send buffer at once".into())
                    }
                    Err(e) => return Err(format!("send: {e}")),
                }
                // The client's own lateness: from when the request was due,
                // or its connection became free if that was later.
                send_lag.push(
                    sent.saturating_duration_since(conn.next_due.max(conn.free_since))
                        .as_nanos() as u64,
                );
                conn.in_flight = Some(if args.closed { sent } else { conn.next_due });
                conn.next_due += interval;
                round_worked = true;
            }
            busy |= conn.in_flight.is_some() || more;
        }
        if !busy {
            break;
        }
        if now > give_up {
            return Err("answers still missing 10 s after the last request was due".into());
        }
        poll.poll(&mut events, Some(Duration::ZERO))
            .map_err(|e| e.to_string())?;
        for event in events.iter() {
            round_worked = true;
            let conn = &mut conns[event.token().0];
            loop {
                match conn.stream.read(&mut chunk) {
                    Ok(0) => return Err("the server closed a keep-alive connection".into()),
                    // Less than asked for: the socket is empty now, and
                    // what arrives later raises a new event (as tokio
                    // does), so no second read only to hear "would block";
                    // unless the peer also closed, which the next read
                    // reports.
                    Ok(n) if n < chunk.len() && !event.is_read_closed() => {
                        conn.answer.extend_from_slice(&chunk[..n]);
                        break;
                    }
                    Ok(n) => conn.answer.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(e) => return Err(format!("receive: {e}")),
                }
            }
            if let Some(status) = complete(&conn.answer)? {
                let due = conn.in_flight.take().ok_or("an answer to no request")?;
                conn.free_since = Instant::now();
                latencies.push(conn.free_since.duration_since(due).as_nanos() as u64);
                if !(200..400).contains(&status) {
                    not_ok += 1;
                }
                conn.answer.clear();
            }
        }
    }
    let elapsed = round_began
        .saturating_duration_since(start)
        .max(Duration::from_nanos(1));
    let client_busy = working.as_secs_f64() / elapsed.as_secs_f64();
    latencies.sort_unstable();
    send_lag.sort_unstable();
    Ok(format!(
        "{{\"requests\": {}, \"rate\": {:.1}, \"target_rate\": {}, \"connections\": {}, \
         \"p50_us\": {:.1}, \"p90_us\": {:.1}, \"p99_us\": {:.1}, \"p999_us\": {:.1}, \"max_us\": {:.1}, \
         \"send_lag_p99_us\": {:.1}, \"client_busy\": {:.3}, \"not_ok\": {}}}",
        latencies.len(),
        latencies.len() as f64 / args.seconds,
        args.rate.map_or("null".to_string(), |r| r.to_string()),
        args.connections,
        percentile(&latencies, 50.0),
        percentile(&latencies, 90.0),
        percentile(&latencies, 99.0),
        percentile(&latencies, 99.9),
        percentile(&latencies, 100.0),
        percentile(&send_lag, 99.0),
        client_busy.min(1.0),
        not_ok,
    ))
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pace: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer for the client to talk to: answers every request on every
    /// connection with `200 ok`, delaying each answer by `delay`; returns
    /// its address and the count of requests it answered.
    fn answering_peer(
        delay: Duration,
    ) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicU64>) {
        use std::sync::atomic::{AtomicU64, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answered = std::sync::Arc::new(AtomicU64::new(0));
        let count = answered.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let (mut stream, count) = (stream.unwrap(), count.clone());
                std::thread::spawn(move || {
                    let mut read = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while let Ok(n) = stream.read(&mut chunk) {
                        if n == 0 {
                            return;
                        }
                        read.extend_from_slice(&chunk[..n]);
                        while let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
                            read.drain(..end + 4);
                            std::thread::sleep(delay);
                            let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if stream.write_all(ok).is_err() {
                                return;
                            }
                            count.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        (addr, answered)
    }

    /// `pace` against `addr` for half a second on 4 connections, with
    /// `mode` (`--closed` or `--rate N`): its JSON line.
    fn run_against(addr: SocketAddr, mode: &[&str]) -> String {
        try_against(addr, mode).unwrap()
    }

    /// `run_against`, with what `pace` says when it fails.
    fn try_against(addr: SocketAddr, mode: &[&str]) -> Result<String, String> {
        let addr = addr.to_string();
        let mut argv = vec![
            "pace",
            "--addr",
            &addr,
            "--connections",
            "4",
            "--seconds",
            "0.5",
        ];
        argv.extend_from_slice(mode);
        argv.extend_from_slice(&["--target", "/x"]);
        run(Args::parse_from(argv))
    }

    fn field(json: &str, name: &str) -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(json).unwrap()[name].clone()
    }

    #[test]
    fn a_closed_loop_sends_the_next_request_when_the_answer_is_in() {
        use std::sync::atomic::Ordering;
        let (addr, answered) = answering_peer(Duration::from_millis(2));
        let out = run_against(addr, &["--closed"]);
        let requests = field(&out, "requests").as_u64().unwrap();
        // Every request sent was answered and counted, one at a time per
        // connection: about 0.5 s / 2 ms on each of 4 connections.
        assert_eq!(requests, answered.load(Ordering::SeqCst), "{out}");
        assert!((200..=1000).contains(&requests), "{out}");
        assert_eq!(field(&out, "target_rate"), serde_json::Value::Null, "{out}");
        // Latency from when each request went out: the peer's 2 ms, not
        // a queue of requests that were never due.
        let p50 = field(&out, "p50_us").as_f64().unwrap();
        assert!((2000.0..50_000.0).contains(&p50), "{out}");
        assert_eq!(field(&out, "not_ok"), 0, "{out}");
        // The client waited on the peer most of the time: it worked in a
        // small share of it, but in some.
        let busy = field(&out, "client_busy").as_f64().unwrap();
        assert!(busy > 0.0 && busy < 0.5, "{out}");
    }

    #[test]
    fn an_open_loop_sends_at_its_rate_however_fast_the_peer() {
        let (addr, _) = answering_peer(Duration::ZERO);
        let out = run_against(addr, &["--rate", "1000"]);
        // 1,000 requests a second for half a second, however fast the peer.
        let requests = field(&out, "requests").as_u64().unwrap();
        assert!((499..=501).contains(&requests), "{out}");
        assert_eq!(field(&out, "target_rate"), 1000, "{out}");
    }

    #[test]
    fn a_peer_that_closes_mid_answer_fails_the_run_at_once() {
        // Each connection gets the start of an answer and the close in one
        // segment (corked until the close), so that one event says both.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let mut stream = stream.unwrap();
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 1024];
                    let _ = stream.read(&mut chunk);
                    rustix::net::sockopt::set_tcp_cork(&stream, true).unwrap();
                    let partial = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok";
                    stream.write_all(partial).unwrap();
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    // Held open until the client has seen the close.
                    std::thread::sleep(Duration::from_secs(2));
                });
            }
        });
        let started = Instant::now();
        let err = try_against(addr, &["--closed"]).unwrap_err();
        // Said as what it is, not as answers missing ten seconds later.
        assert!(err.contains("closed"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    }

    #[test]
    fn an_answer_is_complete_only_with_all_its_body() {
        let answer =
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\ncontent-type: text/plain\r\n\r\nhello";
        for end in 0..answer.len() {
            assert_eq!(
                complete(&answer[..end]),
                Ok(None),
                "complete after {end} bytes"
            );
        }
        assert_eq!(complete(answer), Ok(Some(200)));
        assert!(
            complete(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nab").is_err(),
            "a byte too many"
        );
    }

    #[test]
    fn statuses_without_a_body_and_bad_answers() {
        assert_eq!(
            complete(b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
            Ok(Some(304))
        );
        assert_eq!(
            complete(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\n\r\n{}"),
            Ok(Some(401))
        );
        assert!(complete(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").is_err());
        assert!(complete(b"HTTP/1.1 2xx OK\r\n\r\n").is_err());
        assert!(complete(b"HTTP/1.1 200 OK\r\nContent-Length: many\r\n\r\n").is_err());
    }

    #[test]
    fn percentiles_take_the_rank_that_covers_the_share() {
        let ns: Vec<u64> = (1..=1000).map(|i| i * 1000).collect();
        assert_eq!(percentile(&ns, 50.0), 500.0);
        assert_eq!(percentile(&ns, 99.0), 990.0);
        assert_eq!(percentile(&ns, 100.0), 1000.0);
        assert_eq!(percentile(&[], 99.0), 0.0);
    }

    #[test]
    fn picks_cover_every_target() {
        let mut pick = Pick(0x9e37_79b9_7f4a_7c15);
        let mut seen = [0u32; 7];
        for _ in 0..7000 {
            seen[pick.below(7)] += 1;
        }
        assert!(seen.iter().all(|&n| (800..1200).contains(&n)), "{seen:?}");
    }
}
