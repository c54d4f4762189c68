//! Server CPU time and resident memory from /proc, summed over a process and
//! its children (node's cluster workers are children of the primary).

use std::time::Duration;

/// CPU seconds (user + system) and resident bytes of one process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sample {
    pub cpu_secs: f64,
    pub rss_bytes: u64,
}

fn clock_ticks() -> f64 {
    // Linux reports CPU times in USER_HZ, which is 100 on every
    // architecture Linux supports for user space.
    100.0
}

/// Parses utime + stime (fields 14 and 15) and the parent pid (field 4) of a
/// /proc/PID/stat line. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted after its last ')'.
pub fn parse_stat(line: &str) -> Option<(u32, f64)> {
    let rest = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state).
    let ppid = fields.get(1)?.parse().ok()?;
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((ppid, (utime + stime) / clock_ticks()))
}

/// Parses `VmRSS:  1234 kB` out of /proc/PID/status.
pub fn parse_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn children_of(root: u32) -> Vec<u32> {
    let mut out = vec![root];
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((ppid, _)) = parse_stat(&stat)
        {
            parents.push((pid, ppid));
        }
    }
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// CPU and RSS of `root` and all its descendants now.
pub fn sample_tree(root: u32) -> Sample {
    let mut s = Sample::default();
    for pid in children_of(root) {
        if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            && let Some((_, cpu)) = parse_stat(&stat)
        {
            s.cpu_secs += cpu;
        }
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(rss) = parse_rss(&status)
        {
            s.rss_bytes += rss;
        }
    }
    s
}

/// Resident memory of `pids` now (those that have exited count nothing).
pub fn rss_of(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter_map(|status| parse_rss(&status))
        .sum()
}

/// How often the sampler looks up the process tree again.
const TREE_REFRESH: Duration = Duration::from_secs(1);

/// Samples RSS every 50 ms until `stop` resolves; returns the peak seen.
/// The tree under `root` is looked up again once a second (finding it scans
/// every process on the machine, which, done at every sample, took 5 % of
/// the driver's CPU in the flow case from the cores both servers share).
pub async fn peak_rss_while(root: u32, stop: tokio::sync::oneshot::Receiver<()>) -> u64 {
    let mut stop = stop;
    let mut peak = 0;
    let mut tree = children_of(root);
    let mut looked_up = std::time::Instant::now();
    loop {
        if looked_up.elapsed() >= TREE_REFRESH {
            tree = children_of(root);
            looked_up = std::time::Instant::now();
        }
        peak = peak.max(rss_of(&tree));
        tokio::select! {
            _ = &mut stop => return peak.max(sample_tree(root).rss_bytes),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_the_name() {
        let line = "4242 (my (odd) name) S 17 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 1000 1000000 300 18446744073709551615";
        let (ppid, cpu) = parse_stat(line).unwrap();
        assert_eq!(ppid, 17);
        assert!((cpu - 3.0).abs() < 1e-9, "{cpu}");
    }

    #[test]
    fn rss_in_bytes() {
        let status = "Name:\tx\nVmPeak:\t 9000 kB\nVmRSS:\t  2048 kB\nThreads: 3\n";
        assert_eq!(parse_rss(status), Some(2048 * 1024));
        assert_eq!(parse_rss("Name: x\n"), None);
    }

    #[test]
    fn this_process_is_sampled_with_its_children() {
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let me = std::process::id();
        let tree = children_of(me);
        assert!(tree.contains(&me));
        assert!(tree.contains(&child.id()), "{tree:?}");
        let s = sample_tree(me);
        assert!(s.rss_bytes > 1024 * 1024, "{s:?}");
        let own = rss_of(&[me]);
        assert!(own > 1024 * 1024 && own <= s.rss_bytes, "{own} of {s:?}");
        assert_eq!(rss_of(&[u32::MAX]), 0, "no such process");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn the_peak_covers_the_whole_window() {
        let me = std::process::id();
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let sampler = tokio::spawn(peak_rss_while(me, stop_rx));
        tokio::time::sleep(Duration::from_millis(120)).await;
        let before = rss_of(&[me]);
        // 64 MiB touched after the first samples.
        let big = vec![1u8; 64 << 20];
        tokio::time::sleep(Duration::from_millis(120)).await;
        stop.send(()).unwrap();
        let peak = sampler.await.unwrap();
        assert_eq!(big.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);
        assert!(peak >= before + (32 << 20), "peak {peak}, before {before}");
    }
}
