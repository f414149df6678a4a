//! Blocking client for samld. SKELETON.
