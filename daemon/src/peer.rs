//! Who is on the other end of a loopback TCP connection.
//!
//! Every local user can connect to 127.0.0.1, and all of them arrive from 127.0.0.1, so the
//! address says nothing. The kernel knows which user owns the client's socket, and Linux
//! tells anyone who asks for one exact connection through `NETLINK_SOCK_DIAG` (what `ss -e`
//! shows as `uid:`). That lets the credential endpoint close other users' connections before
//! they hold anything.

use std::net::SocketAddr;

/// The uid owning the socket at `peer` that is connected to our `local` address, when the
/// kernel says (Linux; IPv4); `None` when it cannot be known.
pub fn peer_uid(local: SocketAddr, peer: SocketAddr) -> Option<u32> {
    imp::peer_uid(local, peer)
}

#[cfg(target_os = "linux")]
mod imp {
    use std::io;
    use std::net::{IpAddr, SocketAddr};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    const SOCK_DIAG_BY_FAMILY: u16 = 20;
    const INET_DIAG_NOCOOKIE: u32 = !0;
    const NLMSG_HDR_LEN: usize = 16;
    /// `struct inet_diag_sockid`: ports, two 16-byte addresses, interface, cookie.
    const SOCKID_LEN: usize = 48;
    /// `idiag_uid` in `struct inet_diag_msg`: after family/state/timer/retrans, the sockid
    /// and expires/rqueue/wqueue.
    const MSG_UID_OFFSET: usize = 4 + SOCKID_LEN + 12;

    pub(super) fn peer_uid(local: SocketAddr, peer: SocketAddr) -> Option<u32> {
        query(local, peer).ok().flatten()
    }

    fn query(local: SocketAddr, peer: SocketAddr) -> io::Result<Option<u32>> {
        let (IpAddr::V4(local_ip), IpAddr::V4(peer_ip)) = (local.ip(), peer.ip()) else {
            return Ok(None);
        };
        // SAFETY: a plain socket(2) call; the descriptor is owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };

        // The client's socket: its source is the peer, its destination is us.
        let mut request = Vec::with_capacity(NLMSG_HDR_LEN + 8 + SOCKID_LEN);
        let total = (NLMSG_HDR_LEN + 8 + SOCKID_LEN) as u32;
        request.extend_from_slice(&total.to_ne_bytes());
        request.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        request.extend_from_slice(&(libc::NLM_F_REQUEST as u16).to_ne_bytes());
        request.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        request.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        request.push(libc::AF_INET as u8);
        request.push(libc::IPPROTO_TCP as u8);
        request.push(0); // no extensions
        request.push(0);
        request.extend_from_slice(&u32::MAX.to_ne_bytes()); // any state
        request.extend_from_slice(&peer.port().to_be_bytes());
        request.extend_from_slice(&local.port().to_be_bytes());
        let mut address = [0u8; 16];
        address[..4].copy_from_slice(&peer_ip.octets());
        request.extend_from_slice(&address);
        address[..4].copy_from_slice(&local_ip.octets());
        request.extend_from_slice(&address);
        request.extend_from_slice(&0u32.to_ne_bytes()); // any interface
        request.extend_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());
        request.extend_from_slice(&INET_DIAG_NOCOOKIE.to_ne_bytes());

        // SAFETY: a zeroed sockaddr_nl with the family set addresses the kernel.
        let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        // SAFETY: the buffer and the address are valid for the lengths given.
        let sent = unsafe {
            libc::sendto(
                fd.as_raw_fd(),
                request.as_ptr().cast(),
                request.len(),
                0,
                (&kernel as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut answer = [0u8; 1024];
        // SAFETY: the buffer is valid for its length. The kernel answers an exact lookup at
        // once (or with an error message), so this does not block for long.
        let got =
            unsafe { libc::recv(fd.as_raw_fd(), answer.as_mut_ptr().cast(), answer.len(), 0) };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let answer = &answer[..got as usize];
        let kind = answer.get(4..6).map(|b| u16::from_ne_bytes([b[0], b[1]]));
        if kind != Some(SOCK_DIAG_BY_FAMILY) {
            // NLMSG_ERROR: no such socket (it closed already), or not allowed.
            return Ok(None);
        }
        let uid = answer
            .get(NLMSG_HDR_LEN + MSG_UID_OFFSET..NLMSG_HDR_LEN + MSG_UID_OFFSET + 4)
            .map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
        Ok(uid)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_peer_of_a_loopback_connection_is_us() {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (server, peer) = listener.accept().unwrap();
            // SAFETY: geteuid has no preconditions.
            let me = unsafe { libc::geteuid() };
            assert_eq!(peer_uid(server.local_addr().unwrap(), peer), Some(me));
            assert_eq!(peer, client.local_addr().unwrap());
            // A connection that does not exist has no owner.
            let nobody: SocketAddr = "127.0.0.1:1".parse().unwrap();
            assert_eq!(peer_uid(server.local_addr().unwrap(), nobody), None);
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use std::net::SocketAddr;

    pub(super) fn peer_uid(_local: SocketAddr, _peer: SocketAddr) -> Option<u32> {
        None
    }
}
