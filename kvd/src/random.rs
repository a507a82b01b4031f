//! The randomness of the election's delays and of new ids (node ids, cluster ids): the thread's
//! generator, or one generator seeded by the simulation (`kvd/tests/sim`) so that a seed
//! replays the same run.

use std::{
    ops::Range,
    sync::{Mutex, PoisonError},
};

use rand::{Rng as _, SeedableRng as _, rngs::StdRng};

static SEEDED: Mutex<Option<StdRng>> = Mutex::new(None);

/// Draws every later delay from one generator seeded with `seed` (the simulation).
pub fn seed(seed: u64) {
    *SEEDED.lock().unwrap_or_else(PoisonError::into_inner) = Some(StdRng::seed_from_u64(seed));
}

/// A random (version 4) UUID.
#[must_use]
pub fn uuid() -> uuid::Uuid {
    let bytes: [u8; 16] = match SEEDED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
    {
        Some(rng) => rng.random(),
        None => rand::rng().random(),
    };
    uuid::Builder::from_random_bytes(bytes).into_uuid()
}

/// A number drawn uniformly from `range`.
#[must_use]
pub fn in_range(range: Range<f64>) -> f64 {
    match SEEDED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
    {
        Some(rng) => rng.random_range(range),
        None => rand::rng().random_range(range),
    }
}
