//! Free space on the data directory's disk: writes are refused, with the reason, before the disk
//! is so full that a commit of the log or of the data store could fail half-way (fjall stops for
//! good after a failed journal write), and taken again by themselves once space is freed.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

/// How long a reading of the free space is trusted.
const FRESH: Duration = Duration::from_millis(100);

/// The free-space check of one data directory.
pub struct DiskSpace {
    dir: PathBuf,
    reserve: u64,
    last: Mutex<Option<(Instant, Option<String>)>>,
}

/// Bytes available to kvd on the disk holding `dir`.
///
/// # Errors
/// When `statvfs` fails.
pub fn available(dir: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    #[allow(clippy::useless_conversion)]
    Ok(u64::from(st.blocks_available()) * u64::from(st.fragment_size()))
}

impl DiskSpace {
    /// Keeps at least `reserve` bytes free on the disk of `dir`.
    #[must_use]
    pub fn new(dir: &Path, reserve: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            reserve,
            last: Mutex::new(None),
        }
    }

    /// The bytes kept free.
    #[must_use]
    pub fn reserve(&self) -> u64 {
        self.reserve
    }

    /// Why writes are refused now, if they are: less than the reserve is free.
    #[must_use]
    pub fn refuses(&self) -> Option<String> {
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, why)) = &*last
            && at.elapsed() < FRESH
        {
            return why.clone();
        }
        let why = match available(&self.dir) {
            Ok(free) if free < self.reserve => Some(format!(
                "{:.1} MiB free on the disk of {}, under the {} MiB kvd keeps free for its log \
                 and data store; nothing was written. Free space there (or move the data \
                 directory to a larger disk): writes resume by themselves",
                free as f64 / 1048576.0,
                self.dir.display(),
                self.reserve >> 20
            )),
            _ => None,
        };
        if let Some(why) = &why
            && last.as_ref().is_none_or(|(_, w)| w.is_none())
        {
            tracing::error!(reason = %why, "writes are refused: the disk is nearly full");
        } else if why.is_none() && last.as_ref().is_some_and(|(_, w)| w.is_some()) {
            tracing::info!(dir = %self.dir.display(), "disk space is back: writes are taken again");
        }
        *last = Some((Instant::now(), why.clone()));
        why
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_above_the_free_space_refuses_and_names_the_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = available(dir.path()).expect("statvfs");
        assert!(DiskSpace::new(dir.path(), 0).refuses().is_none());
        let why = DiskSpace::new(dir.path(), free.saturating_mul(2).max(1))
            .refuses()
            .expect("refused");
        assert!(why.contains(&dir.path().display().to_string()), "{why}");
        assert!(why.contains("writes resume by themselves"), "{why}");
    }
}
