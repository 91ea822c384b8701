//! The line protocol codec (PROTOCOL.md section 1). Filled in by the codec work.
