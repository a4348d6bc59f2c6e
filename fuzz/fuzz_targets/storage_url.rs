//! Storage URLs (`--storage`, `storage =`): `StorageUrl::parse` never panics, an error names
//! the URL, and a parsed URL's canonical form (`base`, also the prefix of recording URLs)
//! parses back to the same value and is its own canonical form.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tapelog_store::url::StorageUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    match StorageUrl::parse(url) {
        Ok(u) => {
            let base = u.base();
            let again = StorageUrl::parse(&base);
            assert!(
                matches!(&again, Ok(a) if *a == u),
                "{url:?} → {u:?} → {base:?} → {again:?}"
            );
            assert_eq!(again.map(|a| a.base()).ok().as_deref(), Some(base.as_str()));
        }
        Err(e) => assert!(e.to_string().contains(&format!("{url:?}")), "{e}"),
    }
});
