//! Size limits shared by both ends. The node's own limits may be raised by flags; clients learn
//! them from the error that refuses an oversized request.

/// Default largest key, in bytes (4 KiB).
pub const DEFAULT_MAX_KEY_BYTES: usize = 4 * 1024;
/// Default largest value, in bytes (1 MiB).
pub const DEFAULT_MAX_VALUE_BYTES: usize = 1024 * 1024;
/// Most entries one scan page returns.
pub const MAX_SCAN_LIMIT: u32 = 10_000;
/// Entries a scan page returns when the caller asks for 0.
pub const DEFAULT_SCAN_LIMIT: u32 = 1_000;
/// Longest deadline a server honours; longer (or overflowing) deadlines are clamped to it.
pub const MAX_REQUEST_DEADLINE: std::time::Duration = std::time::Duration::from_secs(3600);
/// Largest frame a client accepts (a scan page or a value with its envelope).
pub const CLIENT_MAX_FRAME_BYTES: usize = 256 * 1024 * 1024;

/// The largest frame a node accepts, given its key and value limits.
///
/// It is well above the largest valid request so that a request that is too large by a few
/// times still decodes and is refused with a message naming the limit; only frames beyond this
/// bound close the connection without an answer.
#[must_use]
pub fn server_max_frame_bytes(max_key: usize, max_value: usize) -> usize {
    (2 * (max_key + max_value)).max(16 * 1024 * 1024) + 64 * 1024
}

/// Largest total of key and value bytes one scan page carries, so a page always fits a frame.
#[must_use]
pub fn scan_page_bytes(max_key: usize, max_value: usize) -> usize {
    (max_key + max_value).max(4 * 1024 * 1024)
}

/// Most keys one `mget` or `mput` carries.
pub const MAX_BATCH_KEYS: usize = 10_000;
