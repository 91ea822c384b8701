//! Postfix attribute lists (attr0). Filled in by the codec work.
