//! Kiln facade
