//! Building HTML safely: every value goes through [`esc`]; pages share [`page`].

use std::fmt::Write;

/// Escapes text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Escapes a path segment for a link.
pub fn url_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~:@".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// A whole number with thousands separators: `197567` → `197,567`, so counts read
/// at a glance. Every count on the pages goes through it.
pub fn count(n: impl Into<i64>) -> String {
    troth_core::number::thousands(n.into())
}

/// The page frame: header navigation, title, body; `refresh_seconds` reloads the page.
pub fn page(title: &str, refresh_seconds: Option<u32>, body: &str) -> String {
    let refresh = refresh_seconds
        .map(|s| format!(r#"<meta http-equiv="refresh" content="{s}">"#))
        .unwrap_or_default();
    frame(title, &refresh, body)
}

/// The page frame with one of the binary's own scripts, which keeps the page
/// current in place instead of reloading it.
pub fn page_with_script(title: &str, body: &str, script: &str) -> String {
    frame(
        title,
        &format!(r#"<script src="{}" defer></script>"#, esc(script)),
        body,
    )
}

fn frame(title: &str, head: &str, body: &str) -> String {
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
{head}<title>{title} · troth</title><link rel="stylesheet" href="/assets/troth.css"></head>
<body><header><a class="brand" href="/">troth</a><a href="/">Overview</a><a href="/ui/journey">Journey</a><a href="/ui/carriers">Carriers</a><a href="/ui/customers">Customers</a><a href="/docs">API</a>{sign_out}</header>
<main><h1>{title}</h1>
{body}
</main></body></html>"#,
        title = esc(title),
        sign_out = if crate::sessions::signed_in() {
            r#"<form class="signout" method="post" action="/logout"><button type="submit">Sign out</button></form>"#
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
        assert_eq!(url_segment("shipment:s 1/2"), "shipment:s%201%2F2");
    }
}
