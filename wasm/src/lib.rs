//! tapelog in the browser.
