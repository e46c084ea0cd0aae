//! Processes: CPU time, resident memory and connections of the operator, kube-apiserver, etcd
//! and the bench, read from `/proc`.

use serde_json::{Value, json};

use crate::stats::round1;

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// User + system CPU seconds of a process.
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
        return 0.0;
    };
    // After the command name: field 3 (state) is index 0, utime (14) index 11, stime (15) 12.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks()
}

/// A `/proc/PID/status` field in bytes (`VmHWM`, `VmRSS`).
pub fn status_bytes(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kib| kib * 1024.0)
}

/// Established TCP connections of `pid` to a local port (its client sides).
pub fn connections_to(pid: u32, port: u16) -> usize {
    let mut inodes = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "01" {
                continue;
            }
            let remote_port = f[2]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if remote_port == Some(port) {
                inodes.insert(f[9].to_string());
            }
        }
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(str::to_string)
        })
        .filter(|i| inodes.contains(i))
        .count()
}

/// CPU seconds of the processes involved.
#[derive(Clone, Copy, Default)]
pub struct Cpu {
    operator: f64,
    apiserver: f64,
    etcd: f64,
    bench: f64,
    /// Busy CPU seconds of the whole machine (every process).
    machine: f64,
}

/// Busy CPU seconds of the machine since boot (`/proc/stat`: all but idle and iowait).
fn machine_busy_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return 0.0;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy: f64 =
        v.iter().take(8).sum::<f64>() - v.get(3).unwrap_or(&0.0) - v.get(4).unwrap_or(&0.0);
    busy / clock_ticks()
}

pub struct Pids {
    pub operator: u32,
    pub apiserver: u32,
    pub etcd: u32,
}

impl Pids {
    pub fn cpu(&self) -> Cpu {
        Cpu {
            operator: cpu_seconds(self.operator),
            apiserver: cpu_seconds(self.apiserver),
            etcd: cpu_seconds(self.etcd),
            bench: cpu_seconds(std::process::id()),
            machine: machine_busy_seconds(),
        }
    }
}

pub fn cpu_delta(a: Cpu, b: Cpu) -> Value {
    let d = |x: f64, y: f64| round1(y - x);
    let ours = (b.operator - a.operator)
        + (b.apiserver - a.apiserver)
        + (b.etcd - a.etcd)
        + (b.bench - a.bench);
    json!({
        "operator": d(a.operator, b.operator),
        "kubeApiserver": d(a.apiserver, b.apiserver),
        "etcd": d(a.etcd, b.etcd),
        "benchAndEmulator": d(a.bench, b.bench),
        // Everything else running on the machine meanwhile (other builds: noise).
        "otherProcesses": round1((b.machine - a.machine - ours).max(0.0)),
    })
}
