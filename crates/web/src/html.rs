//! Server-rendered HTML: the board page and the error pages. Every piece of text that comes
//! from a user, the database or the request goes through [`escape`].

use std::fmt::Write;

use crate::store::Message;
use crate::validate::{AUTHOR_MAX, TEXT_MAX};

/// Escapes `&`, `<`, `>`, `"` and `'`: safe in element content and in quoted attributes.
pub(crate) fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
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

/// `2025-01-31T12:00:05Z` → `2025-01-31 12:00:05 UTC`; anything else as is.
fn display_time(rfc3339: &str) -> String {
    match rfc3339.strip_suffix('Z') {
        Some(t) => format!("{} UTC", t.replacen('T', " ", 1)),
        None => rfc3339.to_string(),
    }
}

/// The page frame: head (stylesheet, favicon), header with "Served by", `body`, footer.
fn layout(title: &str, served_by: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{title}</title>\n<link rel=\"stylesheet\" href=\"/style.css\">\n\
         <link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">\n</head>\n<body>\n\
         <header>\n<a class=\"brand\" href=\"/\">foobar</a>\n\
         <p class=\"served-by\">Served by <strong>{served_by}</strong></p>\n</header>\n\
         <main>\n{body}</main>\n<footer>\n<a href=\"/about.html\">How this site runs</a> · \
         <a href=\"/api/messages\">JSON API</a>\n</footer>\n</body>\n</html>\n",
        title = escape(title),
        served_by = escape(served_by),
    )
}

/// The posting form, prefilled with `author` and `text`.
fn form(author: &str, text: &str) -> String {
    format!(
        "<form class=\"post\" method=\"post\" action=\"/messages\">\n\
         <label for=\"author\">Name</label>\n\
         <input id=\"author\" name=\"author\" maxlength=\"{AUTHOR_MAX}\" required value=\"{author}\">\n\
         <label for=\"text\">Message</label>\n\
         <textarea id=\"text\" name=\"text\" maxlength=\"{TEXT_MAX}\" rows=\"3\" required>{text}</textarea>\n\
         <button type=\"submit\">Post</button>\n</form>\n",
        author = escape(author),
        text = escape(text),
    )
}

/// `GET /`: the form and `messages` (already newest first).
pub(crate) fn board_page(served_by: &str, messages: &[Message]) -> String {
    let mut body = String::from("<h1>Message board</h1>\n");
    body.push_str(&form("", ""));
    body.push_str("<h2>Latest messages</h2>\n");
    if messages.is_empty() {
        body.push_str("<p class=\"empty\">No messages yet. Be the first.</p>\n");
    } else {
        body.push_str("<ol class=\"messages\">\n");
        for m in messages {
            let _ = write!(
                body,
                "<li id=\"m{id}\">\n<p class=\"meta\"><strong>{author}</strong> \
                 <time datetime=\"{at}\">{shown}</time> <span class=\"via\">via {via}</span></p>\n\
                 <p class=\"text\">{text}</p>\n</li>\n",
                id = m.id,
                author = escape(&m.author),
                at = escape(&m.created_at),
                shown = escape(&display_time(&m.created_at)),
                via = escape(&m.served_by),
                text = escape(&m.text),
            );
        }
        body.push_str("</ol>\n");
    }
    layout("foobar: message board", served_by, &body)
}

/// A refused form post: the reason and the form again with what was typed (nothing is lost).
pub(crate) fn form_error_page(served_by: &str, problem: &str, author: &str, text: &str) -> String {
    let body = format!(
        "<h1>Your message was not posted</h1>\n<p class=\"error\">{}</p>\n{}\
         <p><a href=\"/\">Back to the board</a></p>\n",
        escape(problem),
        form(author, text)
    );
    layout("foobar: message not posted", served_by, &body)
}

/// A short error page: `title` as heading, `detail` below it.
pub(crate) fn error_page(served_by: &str, title: &str, detail: &str) -> String {
    let body = format!(
        "<h1>{}</h1>\n<p class=\"error\">{}</p>\n<p><a href=\"/\">Back to the board</a></p>\n",
        escape(title),
        escape(detail)
    );
    layout(&format!("foobar: {title}"), served_by, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_the_five_special_characters() {
        assert_eq!(
            escape(r#"<a href="x" onclick='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain é text"), "plain é text");
    }

    fn message(author: &str, text: &str) -> Message {
        Message {
            id: 3,
            author: author.into(),
            text: text.into(),
            created_at: "2025-01-31T12:00:05Z".into(),
            served_by: "web-<1>".into(),
        }
    }

    #[test]
    fn the_board_escapes_everything_it_shows() {
        let page = board_page(
            "web-\"2\"",
            &[message("<script>alert(1)</script>", "a & b\n<i>c</i>")],
        );
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a &amp; b\n&lt;i&gt;c&lt;/i&gt;"));
        assert!(page.contains("via web-&lt;1&gt;"));
        assert!(page.contains("Served by <strong>web-&quot;2&quot;</strong>"));
        assert!(page.contains("2025-01-31 12:00:05 UTC"));
        assert!(page.contains("href=\"/style.css\""));
        assert!(page.contains("action=\"/messages\""));
    }

    #[test]
    fn an_empty_board_invites_a_first_message() {
        let page = board_page("web-1", &[]);
        assert!(page.contains("No messages yet"));
        assert!(page.contains("Served by <strong>web-1</strong>"));
    }

    #[test]
    fn the_form_error_page_keeps_what_was_typed() {
        let page = form_error_page("web-1", "author: is required", "\"><b>", "</textarea><b>");
        assert!(page.contains("value=\"&quot;&gt;&lt;b&gt;\""));
        assert!(page.contains("&lt;/textarea&gt;&lt;b&gt;</textarea>"));
        assert!(page.contains("author: is required"));
    }
}
