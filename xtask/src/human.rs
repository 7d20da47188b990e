//! Numbers as people read them in xtask's reports: sizes in the decimal units Docker
//! prints. A leaf: the builders, dist, verify and the bench all print through it.

pub(crate) fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..1_000 => format!("{bytes} B"),
        1_000..1_000_000 => format!("{:.1} kB", bytes as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", bytes as f64 / 1e6),
        _ => format!("{:.2} GB", bytes as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker_prints_them() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(34_500_000), "34.5 MB");
        assert_eq!(human_bytes(2_040_000_000), "2.04 GB");
    }
}
