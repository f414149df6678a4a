//! JumpCloud. SKELETON.
