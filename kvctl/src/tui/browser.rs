//! The Keys screen's state: a paged, ordered list of keys, filtered by prefix and optionally
//! by shard, and the selection in it.
//!
//! Pages are walked forward with the scan's `next` cursor; going back pops the cursor of the
//! page before, kept on a stack (`cursors[0]` is `None`, the first page). Every request bumps
//! a generation number and answers to older requests are dropped, so a slow page can never
//! overwrite the one the operator moved to. The current page is asked again on every refresh
//! while the screen is shown, keeping it live; the selection follows its key.

use crate::tui::{app::Command, event::KeyPage};

/// Keys per page.
pub const PAGE_SIZE: u32 = 100;

/// One request for a page of keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPlan {
    /// The browser's request number.
    pub generation: u64,
    /// Only keys with this prefix.
    pub prefix: Vec<u8>,
    /// Start after this key (`None`: from the first key).
    pub start_after: Option<Vec<u8>>,
    /// Only keys of this shard: (shard, number of shards).
    pub shard: Option<(u32, u32)>,
    /// Keys per page.
    pub limit: u32,
}

/// The key list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Browser {
    /// The prefix filter (empty: every key).
    pub prefix: Vec<u8>,
    /// The shard filter: (shard, number of shards).
    pub shard: Option<(u32, u32)>,
    /// `start_after` of every page up to the current one.
    cursors: Vec<Option<Vec<u8>>>,
    /// The current page: keys and versions.
    pub rows: Vec<(Vec<u8>, u64)>,
    /// Where the next page starts, when there is one.
    pub next: Option<Vec<u8>>,
    /// Index of the selected row.
    pub selected: usize,
    /// A request is in flight.
    pub loading: bool,
    /// A page has arrived since the filter last changed.
    pub loaded: bool,
    generation: u64,
}

impl Default for Browser {
    fn default() -> Self {
        Self {
            prefix: Vec::new(),
            shard: None,
            cursors: vec![None],
            rows: Vec::new(),
            next: None,
            selected: 0,
            loading: false,
            loaded: false,
            generation: 0,
        }
    }
}

impl Browser {
    /// The page number, from 1.
    pub fn page(&self) -> usize {
        self.cursors.len()
    }

    /// A request for the current page.
    pub fn request(&mut self) -> Command {
        self.generation += 1;
        self.loading = true;
        Command::Scan(ScanPlan {
            generation: self.generation,
            prefix: self.prefix.clone(),
            start_after: self.cursors.last().cloned().flatten(),
            shard: self.shard,
            limit: PAGE_SIZE,
        })
    }

    /// The page after this one, if there is one.
    pub fn next_page(&mut self) -> Option<Command> {
        let next = self.next.clone()?;
        self.cursors.push(Some(next));
        self.selected = 0;
        Some(self.request())
    }

    /// The page before this one, if there is one.
    pub fn prev_page(&mut self) -> Option<Command> {
        if self.cursors.len() <= 1 {
            return None;
        }
        self.cursors.pop();
        self.selected = 0;
        Some(self.request())
    }

    /// Back to the first page.
    pub fn first_page(&mut self) -> Command {
        self.cursors.truncate(1);
        self.selected = 0;
        self.request()
    }

    /// A new prefix filter, from the first page.
    pub fn set_prefix(&mut self, prefix: Vec<u8>) -> Command {
        self.prefix = prefix;
        self.loaded = false;
        self.first_page()
    }

    /// The next shard filter: all shards, then 0, 1, … `shards - 1`, then all again.
    pub fn cycle_shard(&mut self, shards: u32) -> Command {
        self.shard = match self.shard {
            None if shards > 0 => Some((0, shards)),
            Some((s, n)) if n == shards && s + 1 < shards => Some((s + 1, shards)),
            _ => None,
        };
        self.loaded = false;
        self.first_page()
    }

    /// Takes an answer; returns whether it was for the latest request.
    pub fn apply(&mut self, generation: u64, page: KeyPage) -> bool {
        if generation != self.generation {
            return false;
        }
        let selected_key = self.rows.get(self.selected).map(|(k, _)| k.clone());
        self.rows = page.rows;
        self.next = page.next;
        self.loading = false;
        self.loaded = true;
        self.selected = selected_key
            .and_then(|k| self.rows.iter().position(|(r, _)| *r >= k))
            .unwrap_or(self.selected)
            .min(self.rows.len().saturating_sub(1));
        true
    }

    /// A failed answer: stop waiting for it, keep the rows shown.
    pub fn failed(&mut self, generation: u64) -> bool {
        if generation != self.generation {
            return false;
        }
        self.loading = false;
        true
    }

    /// The selected key and its version.
    pub fn selected(&self) -> Option<&(Vec<u8>, u64)> {
        self.rows.get(self.selected)
    }

    /// Moves the selection by `delta` rows, within the page.
    pub fn move_by(&mut self, delta: isize) {
        let last = self.rows.len().saturating_sub(1);
        self.selected = self.selected.saturating_add_signed(delta).min(last);
    }

    /// Selects the first or the last row.
    pub fn select_edge(&mut self, last: bool) {
        self.selected = if last {
            self.rows.len().saturating_sub(1)
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(keys: &[&str], next: Option<&str>) -> KeyPage {
        KeyPage {
            rows: keys.iter().map(|k| (k.as_bytes().to_vec(), 1)).collect(),
            next: next.map(|n| n.as_bytes().to_vec()),
        }
    }

    fn plan(c: Option<Command>) -> ScanPlan {
        match c {
            Some(Command::Scan(p)) => p,
            other => panic!("not a scan: {other:?}"),
        }
    }

    #[test]
    fn pages_forward_and_back_with_cursors() {
        let mut b = Browser::default();
        let p1 = plan(Some(b.request()));
        assert_eq!((p1.start_after.as_deref(), p1.limit), (None, PAGE_SIZE));
        assert!(b.loading);
        assert!(b.apply(p1.generation, page(&["a", "b"], Some("b"))));
        assert_eq!(b.prev_page(), None, "no page before the first");
        let p2 = plan(b.next_page());
        assert_eq!(p2.start_after.as_deref(), Some(&b"b"[..]));
        assert_eq!(b.page(), 2);
        assert!(b.apply(p2.generation, page(&["c"], None)));
        assert_eq!(b.next_page(), None, "no page after the last");
        let p1_again = plan(b.prev_page());
        assert_eq!(p1_again.start_after, None);
        assert_eq!(b.page(), 1);
    }

    #[test]
    fn answers_to_older_requests_are_dropped() {
        let mut b = Browser::default();
        let old = plan(Some(b.request()));
        let new = plan(Some(b.set_prefix(b"user:".to_vec())));
        assert_eq!(new.prefix, b"user:");
        assert!(!b.apply(old.generation, page(&["zzz"], None)));
        assert!(b.rows.is_empty());
        assert!(b.loading);
        assert!(b.apply(new.generation, page(&["user:1"], None)));
        assert!(!b.loading);
    }

    #[test]
    fn selection_follows_its_key_across_a_refresh() {
        let mut b = Browser::default();
        let p = plan(Some(b.request()));
        b.apply(p.generation, page(&["a", "b", "c"], None));
        b.move_by(2);
        assert_eq!(b.selected().map(|(k, _)| k.as_slice()), Some(&b"c"[..]));
        let p = plan(Some(b.request()));
        // "a" was deleted: "c" is now row 1.
        b.apply(p.generation, page(&["b", "c"], None));
        assert_eq!(b.selected, 1);
        let p = plan(Some(b.request()));
        // "c" was deleted: the selection stays in range.
        b.apply(p.generation, page(&["b"], None));
        assert_eq!(b.selected, 0);
        b.move_by(-5);
        assert_eq!(b.selected, 0);
    }

    #[test]
    fn shard_filter_cycles_through_every_shard() {
        let mut b = Browser::default();
        assert_eq!(plan(Some(b.cycle_shard(3))).shard, Some((0, 3)));
        assert_eq!(plan(Some(b.cycle_shard(3))).shard, Some((1, 3)));
        assert_eq!(plan(Some(b.cycle_shard(3))).shard, Some((2, 3)));
        assert_eq!(plan(Some(b.cycle_shard(3))).shard, None);
        assert_eq!(plan(Some(b.cycle_shard(0))).shard, None);
    }
}
