//! The router process's resident memory and CPU time, read from `/proc` at
//! scrape time (Linux only; elsewhere, or when `/proc` is not readable,
//! nothing is rendered).
//!
//! The page size and the clock tick come from the process's auxiliary
//! vector (`/proc/self/auxv`), so no `unsafe` `sysconf` call is needed.

use std::fmt::Write;
use std::sync::OnceLock;

use super::names;

/// `AT_PAGESZ` and `AT_CLKTCK` in the auxiliary vector.
const AT_PAGESZ: u64 = 6;
const AT_CLKTCK: u64 = 17;

/// What `/proc` says about the process now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    pub resident_bytes: u64,
    pub cpu_seconds: f64,
}

/// Reads the process's usage now.
pub fn usage() -> Option<Usage> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let (page_size, clock_ticks) = *system();
    Some(Usage {
        resident_bytes: resident_pages(&statm)? * page_size,
        cpu_seconds: cpu_ticks(&stat)? as f64 / clock_ticks as f64,
    })
}

/// The process metrics in Prometheus text format ("" when unknown).
pub fn exposition() -> String {
    let Some(usage) = usage() else {
        return String::new();
    };
    let mut out = String::new();
    let memory = names::PROCESS_RESIDENT_MEMORY;
    let cpu = names::PROCESS_CPU;
    let _ = writeln!(out, "# HELP {} {}", memory.name, memory.help);
    let _ = writeln!(out, "# TYPE {} gauge", memory.name);
    let _ = writeln!(out, "{} {}\n", memory.name, usage.resident_bytes);
    let _ = writeln!(out, "# HELP {} {}", cpu.name, cpu.help);
    let _ = writeln!(out, "# TYPE {} counter", cpu.name);
    let _ = writeln!(out, "{} {}\n", cpu.name, usage.cpu_seconds);
    out
}

/// Page size and clock ticks per second (4096 and 100 when unknown).
fn system() -> &'static (u64, u64) {
    static SYSTEM: OnceLock<(u64, u64)> = OnceLock::new();
    SYSTEM.get_or_init(|| {
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        (
            auxv_value(&auxv, AT_PAGESZ).unwrap_or(4096),
            auxv_value(&auxv, AT_CLKTCK)
                .filter(|&t| t > 0)
                .unwrap_or(100),
        )
    })
}

/// The value of `key` in an auxiliary vector of native-endian `usize` pairs.
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |bytes: &[u8]| -> u64 {
        let mut buf = [0u8; WORD];
        buf.copy_from_slice(bytes);
        usize::from_ne_bytes(buf) as u64
    };
    auxv.chunks_exact(2 * WORD)
        .map(|pair| (word(&pair[..WORD]), word(&pair[WORD..])))
        .find(|&(k, _)| k == key)
        .map(|(_, value)| value)
}

/// `utime + stime` (fields 14 and 15) of `/proc/self/stat`. The command
/// name (field 2) may hold spaces and parentheses, so fields are counted
/// from the last `)`.
fn cpu_ticks(stat: &str) -> Option<u64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The resident set (field 2) of `/proc/self/statm`, in pages.
fn resident_pages(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0";
        assert_eq!(cpu_ticks(stat), Some(325));
        assert_eq!(cpu_ticks("garbage"), None);
        assert_eq!(resident_pages("1000 250 100 1 0 300 0\n"), Some(250));
        assert_eq!(resident_pages(""), None);
    }

    #[test]
    fn auxv_values_are_found_by_key() {
        let mut auxv = Vec::new();
        for (k, v) in [(3u64, 77u64), (AT_PAGESZ, 4096), (AT_CLKTCK, 100), (0, 0)] {
            auxv.extend_from_slice(&(k as usize).to_ne_bytes());
            auxv.extend_from_slice(&(v as usize).to_ne_bytes());
        }
        assert_eq!(auxv_value(&auxv, AT_PAGESZ), Some(4096));
        assert_eq!(auxv_value(&auxv, AT_CLKTCK), Some(100));
        assert_eq!(auxv_value(&auxv, 99), None);
        assert_eq!(auxv_value(&auxv[..5], AT_PAGESZ), None);
    }

    #[test]
    fn this_process_has_memory_and_has_used_some_cpu() {
        let usage = usage().expect("/proc/self is readable on Linux");
        assert!(usage.resident_bytes > 1 << 20, "{usage:?}");
        assert!(usage.cpu_seconds >= 0.0, "{usage:?}");
        let text = exposition();
        assert!(text.contains("# TYPE influxdb_router_process_cpu_seconds_total counter"));
    }
}
