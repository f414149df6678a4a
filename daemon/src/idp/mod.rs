//! Identity providers. SKELETON.

pub mod jumpcloud;
