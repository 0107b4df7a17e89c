//! The HTTP service of a web node: the static-file fast path in front of the router of the
//! foobar app's routes (the static files as its fallback), and what every response goes
//! through (`X-Served-By`, body limit, request counter, the metrics of [`crate::metrics`]).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::HeaderValue;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use http::header::HeaderName;

use crate::file_cache::Prepared;
use crate::http1::wire::Plain;
use crate::metrics::WebMetrics;
use crate::schema::Schema;
use crate::static_files::StaticFiles;
use crate::store::{MessageStore, NewMessage};
use crate::validate::ValidMessage;
use crate::{api, errors, pages, static_files};

/// Largest request body the app reads: 64 KiB (a message is at most 1000 characters).
pub(crate) const BODY_LIMIT: usize = 64 * 1024;

/// The header naming the node that generated a response.
pub(crate) const X_SERVED_BY: HeaderName = HeaderName::from_static("x-served-by");

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App<S> {
    /// The database, behind the trait the app declares.
    pub store: S,
    /// This node's name: `X-Served-By`, "Served by", `served_by` of new messages.
    pub name: Arc<str>,
    /// Whether the `messages` table exists.
    pub schema: Arc<Schema>,
    /// The code base's static files.
    pub files: Arc<StaticFiles>,
    /// Requests, latencies and messages posted, for `/metrics`.
    pub metrics: Arc<WebMetrics>,
}

impl<S: MessageStore> App<S> {
    /// Counts one message stored.
    pub(crate) fn posted(&self) {
        self.metrics.posted.fetch_add(1, Ordering::Relaxed);
    }

    /// A validated message, stamped with now and this node's name.
    pub(crate) fn new_message(&self, m: ValidMessage) -> NewMessage {
        NewMessage {
            author: m.author,
            text: m.text,
            created_at: created_at(),
            served_by: self.name.to_string(),
        }
    }
}

/// Now, UTC, RFC 3339 with second precision: `2025-01-31T12:00:05Z` ([`writable_now`]).
fn created_at() -> String {
    humantime::format_rfc3339_seconds(writable_now()).to_string()
}

/// Now, within what RFC 3339 and HTTP dates can write: a clock before 1970 or after 9999
/// (where humantime's and httpdate's formatters would panic) gives the nearest end of that
/// range.
pub(crate) fn writable_now() -> std::time::SystemTime {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    // 9999-12-31T23:59:59Z.
    let last = UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    SystemTime::now().clamp(UNIX_EPOCH, last)
}

/// The whole HTTP service of a web node: every request is counted, answered from the
/// static-file cache when it can be ([`static_files::cached`], without the router), else
/// routed; every answer carries `X-Served-By`.
///
/// The fast path answers only paths that reached the static files through the router's
/// fallback before (only those enter the cache), so it never takes a request from an app
/// route: the routes are fixed at start.
#[derive(Clone)]
pub(crate) struct WebService(Arc<Parts>);

/// What [`WebService`] shares between connections (cloned per request: one count).
struct Parts {
    router: Router,
    files: Arc<StaticFiles>,
    metrics: Arc<WebMetrics>,
    requests: Arc<AtomicU64>,
    served_by: HeaderValue,
}

impl WebService {
    /// The service of `app`; `requests` counts every request received.
    ///
    /// # Errors
    ///
    /// The node name cannot be a header value (it can: names are validated `[A-Za-z0-9_-]`).
    pub(crate) fn new<S: MessageStore>(
        app: App<S>,
        requests: Arc<AtomicU64>,
    ) -> Result<WebService, http::header::InvalidHeaderValue> {
        Ok(WebService(Arc::new(Parts {
            served_by: HeaderValue::from_str(&app.name)?,
            files: app.files.clone(),
            metrics: app.metrics.clone(),
            requests,
            router: router(app),
        })))
    }
}

impl WebService {
    /// The fast path of [`crate::http1`]'s loop: a cached file's prepared answer to `req`,
    /// counted and measured as [`WebService::call`] counts its answers (route `static`);
    /// `None` if the cache cannot answer (the loop then hands the request to hyper).
    pub(crate) fn answer_plain(&self, req: &Plain<'_>) -> Option<Prepared> {
        let this = &*self.0;
        let start = Instant::now();
        let answer = static_files::prepared(&this.files, req)?;
        this.requests.fetch_add(1, Ordering::Relaxed);
        this.metrics
            .record(None, answer.status.as_u16(), start.elapsed());
        this.metrics.prepared.fetch_add(1, Ordering::Relaxed);
        Some(answer)
    }
}

impl tower::Service<Request> for WebService {
    type Response = Response;
    type Error = Infallible;
    type Future = WebFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request) -> WebFuture {
        let this = &*self.0;
        this.requests.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        // A cached answer carries this node's `X-Served-By` already (`static_files::keep`).
        if let Some(resp) = static_files::cached(&this.files, &mut req) {
            this.metrics
                .record(None, resp.status().as_u16(), start.elapsed());
            return WebFuture::Ready(Some(resp));
        }
        // axum's Router is always ready (`poll_ready` is `Ready(Ok(()))`).
        let routed = this.router.clone().call(req);
        let served_by = this.served_by.clone();
        WebFuture::Routed(Box::pin(async move {
            let mut resp = match routed.await {
                Ok(resp) => resp,
                Err(never) => match never {},
            };
            resp.headers_mut().insert(X_SERVED_BY, served_by);
            resp
        }))
    }
}

/// The answer of [`WebService`]: ready at once (a cached file), or the router's.
pub(crate) enum WebFuture {
    /// Taken when polled.
    Ready(Option<Response>),
    /// The router's answer, then `X-Served-By`.
    Routed(Pin<Box<dyn Future<Output = Response> + Send>>),
}

impl Future for WebFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            WebFuture::Ready(resp) => Poll::Ready(Ok(resp.take().expect("polled after Ready"))),
            WebFuture::Routed(routed) => routed.as_mut().poll(cx).map(Ok),
        }
    }
}

/// The app's routes, with the static files (the same [`StaticFiles`]) as the fallback.
fn router<S: MessageStore>(app: App<S>) -> Router {
    // The static files are a service of their own, holding only what they use: as a
    // handler of the app's state, every file served would clone the whole app (the
    // database client included).
    let (files, name) = (app.files.clone(), app.name.clone());
    let metrics = app.metrics.clone();
    let static_files = tower::service_fn(move |req: Request| {
        let (files, name) = (files.clone(), name.clone());
        async move { Ok::<_, Infallible>(static_files::serve(&files, &name, req).await) }
    });
    Router::new()
        .route("/", get(pages::board::<S>))
        .route("/messages", post(pages::post_form::<S>))
        .route("/api/messages", get(api::list::<S>).post(api::create::<S>))
        .route("/api/messages/{id}", get(api::get_one::<S>))
        .route("/healthz", get(healthz))
        .fallback_service(static_files)
        .method_not_allowed_fallback(method_not_allowed::<S>)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(app)
        .layer(axum::middleware::from_fn_with_state(
            metrics,
            crate::metrics::observe,
        ))
}

/// Liveness for the load balancer's health check; does not touch the database.
async fn healthz() -> &'static str {
    "ok"
}

async fn method_not_allowed<S: MessageStore>(State(app): State<App<S>>, req: Request) -> Response {
    errors::method_not_allowed(&app.name, req.method().as_str(), req.uri().path())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    #[test]
    fn created_at_is_rfc3339_utc_to_the_second() {
        let s = super::created_at();
        assert_eq!(s.len(), "2025-01-31T12:00:05Z".len(), "{s}");
        assert!(s.ends_with('Z') && s.as_bytes()[10] == b'T', "{s}");
        let t = humantime::parse_rfc3339(&s).expect("RFC 3339");
        let off = SystemTime::now().duration_since(t).unwrap_or_default();
        assert!(off < Duration::from_secs(60), "{s} is {off:?} from now");
    }
}
