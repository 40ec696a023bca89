//! Request paths: path segments and query values percent-encoded, so that names and queries
//! holding anything (spaces, `&`, `/`) reach packd as typed.

pub use packd_api::url_encode as encode;

/// `path?k=v&…` with every key and value encoded; `path` alone when there are no pairs.
pub fn with_query<K: AsRef<str>, V: AsRef<str>>(path: &str, pairs: &[(K, V)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k.as_ref()), encode(v.as_ref())))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// A comma-separated list of names as one query value (`names=a,b`): each name encoded, the
/// commas kept.
pub fn name_list(names: &[String]) -> String {
    names
        .iter()
        .map(|n| encode(n))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_encoded() {
        assert_eq!(encode("a b&c=d.pack"), "a%20b%26c%3Dd.pack");
        assert_eq!(encode("é/?"), "%C3%A9%2F%3F");
    }

    #[test]
    fn queries_are_built_from_pairs() {
        assert_eq!(
            with_query("/v2/find", &[("q", "hello world"), ("remote", "my&store")]),
            "/v2/find?q=hello%20world&remote=my%26store"
        );
        assert_eq!(with_query("/v2/find", &[("q", "")]), "/v2/find?q=");
        let none: &[(&str, &str)] = &[];
        assert_eq!(
            with_query("/v2/assertions/root-key", none),
            "/v2/assertions/root-key"
        );
        assert_eq!(name_list(&["a".into(), "b c".into()]), "a,b%20c");
    }
}
