//! Who is behind a netlink port: the process holding the socket the kernel
//! stamped on an event (from /proc/net/netlink and the processes' file
//! descriptors), for the log line that names who deleted a rule of ours.

/// "pid N (comm)" for the route-netlink socket with port `port`, or the
/// port when no process is found (it may have exited).
pub fn port_owner(port: u32) -> String {
    let inode = std::fs::read_to_string("/proc/net/netlink")
        .ok()
        .and_then(|t| {
            t.lines().skip(1).find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                // sk Eth Pid Groups Rmem Wmem Dump Locks Drops Inode
                (f.len() >= 10 && f[1] == "0" && f[2].parse() == Ok(port)).then(|| f[9].to_owned())
            })
        });
    let Some(inode) = inode else {
        return format!("netlink port {port}");
    };
    let want = format!("socket:[{inode}]");
    let procs = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    for p in procs {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let fds = std::fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten();
        for fd in fds {
            if std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == want.as_str()) {
                let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
                return format!("pid {pid} ({})", comm.trim());
            }
        }
    }
    format!("netlink port {port}")
}
