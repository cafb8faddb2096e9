//! The example pages built into the binary (see `build.rs`), served at `/`
//! when no static directory is configured: the same answers as a directory
//! server for them (a directory's `index.html` is its page, `/broadcast`
//! redirects to `/broadcast/` so that relative links work, 404 otherwise).

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Redirect, Response};

include!(concat!(env!("OUT_DIR"), "/examples.rs"));

fn find(path: &str) -> Option<&'static [u8]> {
    EXAMPLES
        .binary_search_by(|(name, _)| (*name).cmp(path))
        .ok()
        .map(|i| EXAMPLES[i].1)
}

/// Answers a GET of `uri` from the built-in examples.
pub(crate) async fn serve(uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    let file = if path.is_empty() || path.ends_with('/') {
        format!("{path}index.html")
    } else {
        path.to_owned()
    };
    if let Some(body) = find(&file) {
        let mime = mime_guess::from_path(&file).first_or_octet_stream();
        let text = mime.type_() == mime_guess::mime::TEXT
            || mime.subtype() == mime_guess::mime::JAVASCRIPT;
        let content_type = if text {
            format!("{}; charset=utf-8", mime.essence_str())
        } else {
            mime.essence_str().to_owned()
        };
        return (
            [
                (header::CONTENT_TYPE, content_type),
                (header::CACHE_CONTROL, "no-cache".to_owned()),
            ],
            body,
        )
            .into_response();
    }
    if find(&format!("{path}/index.html")).is_some() {
        return Redirect::permanent(&format!("/{path}/")).into_response();
    }
    (StatusCode::NOT_FOUND, "not found").into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_sorted_and_holds_the_index_page() {
        assert!(
            EXAMPLES.windows(2).all(|w| w[0].0 < w[1].0),
            "binary search needs sorted names"
        );
        let index = find("index.html").expect("examples/index.html is built in");
        assert_eq!(
            index,
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../examples/index.html"
            ))
            .expect("the source")
        );
    }
}
