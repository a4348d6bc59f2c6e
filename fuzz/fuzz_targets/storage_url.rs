//! Storage URLs (`--storage`, `storage =`): `StorageUrl::parse` never panics, an error names
//! the URL, and a parsed URL's canonical form (`base`, also the prefix of recording URLs)
//! parses back to the same place (without the query options) and is its own canonical form.
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
            // The base names the place: an s3:// or gs:// URL's query options (client
            // settings such as the region or the endpoint) are not part of it.
            let place = match u.clone() {
                StorageUrl::S3 { bucket, prefix, .. } => StorageUrl::S3 {
                    bucket,
                    prefix,
                    options: Vec::new(),
                },
                StorageUrl::Gcs { bucket, prefix, .. } => StorageUrl::Gcs {
                    bucket,
                    prefix,
                    options: Vec::new(),
                },
                other => other,
            };
            assert!(
                matches!(&again, Ok(a) if *a == place),
                "{url:?} → {u:?} → {base:?} → {again:?}"
            );
            assert_eq!(again.map(|a| a.base()).ok().as_deref(), Some(base.as_str()));
        }
        Err(e) => assert!(e.to_string().contains(&format!("{url:?}")), "{e}"),
    }
});
