//! The embedded token authority's tests, over real HTTP on loopback.

mod simulator;
