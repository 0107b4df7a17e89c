//! Binding a frontend on a VIP so that the newest master gets every new connection, even
//! while an old master that stopped (SIGSTOP) still holds its listening socket.
//!
//! On one machine every lb shares the kernel: a stopped master's listener keeps taking
//! connections (the kernel completes their handshakes) and nothing can close it from
//! outside without privileges. So VIP listeners join one `SO_REUSEPORT` group per
//! address:port, and the lb that takes the VIP attaches a one-instruction classic BPF
//! program to the group (`SO_ATTACH_REUSEPORT_CBPF`) that returns its own socket's index:
//! the kernel then hands it every new connection. When the old master closes its socket,
//! the remaining one is alone and gets everything whatever the program says (an index out
//! of range falls back to the hash, over one socket). Two lbs per VIP on one host are
//! assumed (the index is 0 or 1); on real interfaces each host has its own kernel and this
//! costs nothing.

use std::net::{SocketAddr, TcpListener};

use nix::libc;
use nix::sys::socket::{setsockopt, sockopt};
use socket2::{Domain, Socket, Type};

/// Binds a listening socket on `addr` (a VIP and a frontend's port) that takes every new
/// connection from other lbs' sockets on the same address.
///
/// # Errors
///
/// The socket, bind, listen or steering error.
pub fn bind_vip(addr: SocketAddr) -> std::io::Result<TcpListener> {
    // Someone else holds the address when a plain socket cannot bind it: ours will be the
    // group's second socket.
    let index = match plain_bind(addr) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => 1,
        Err(e) => return Err(e),
    };
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_nonblocking(true)?;
    sock.bind(&addr.into())?;
    sock.listen(1024)?;
    steer_to(&sock, index)?;
    Ok(sock.into())
}

fn plain_bind(addr: SocketAddr) -> std::io::Result<()> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())?;
    probe.listen(1)?;
    Ok(())
}

/// Makes the reuseport group of `sock` pick its socket number `index` for every connection.
fn steer_to(sock: &Socket, index: u32) -> std::io::Result<()> {
    let mut program = [libc::sock_filter {
        code: (libc::BPF_RET | libc::BPF_K) as u16,
        jt: 0,
        jf: 0,
        k: index,
    }];
    let fprog = libc::sock_fprog {
        len: 1,
        filter: program.as_mut_ptr(),
    };
    setsockopt(sock, sockopt::AttachReusePortCbpf, &fprog).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn who_answers(addr: SocketAddr, listeners: &[(&str, &TcpListener)]) -> String {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.write_all(b"x").unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            for (name, l) in listeners {
                if let Ok((mut s, _)) = l.accept() {
                    let mut b = [0u8; 1];
                    s.set_nonblocking(false).unwrap();
                    s.read_exact(&mut b).unwrap();
                    return (*name).to_string();
                }
            }
            assert!(std::time::Instant::now() < deadline, "nobody accepted");
            std::thread::yield_now();
        }
    }

    #[test]
    fn the_newest_holder_gets_every_connection() {
        let addr: SocketAddr = "127.0.79.250:18080".parse().unwrap();
        let old = bind_vip(addr).unwrap();
        assert_eq!(who_answers(addr, &[("old", &old)]), "old");
        let new = bind_vip(addr).unwrap();
        for _ in 0..20 {
            assert_eq!(who_answers(addr, &[("old", &old), ("new", &new)]), "new");
        }
        drop(old);
        assert_eq!(who_answers(addr, &[("new", &new)]), "new");
    }
}
