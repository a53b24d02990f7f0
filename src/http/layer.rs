//! The one middleware every request passes: its id and context (`telemetry::context`), the
//! outcome's log line, the request metrics and the headers every response carries. One
//! hand-written future instead of a stack of middlewares, each of which boxed its future and
//! read the clock.

use std::future::{ready, Future, Ready};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::http::header::{self, HeaderValue};
use tokio::task::futures::TaskLocalFuture;

use crate::telemetry::context::{log_outcome, RequestContext};
use crate::telemetry::{HelpUrls, REQUEST_ID_HEADER};

/// The layer every request passes, for a deployment with these help URLs, counting requests
/// in `metrics` when given.
pub struct RequestLayer {
    help: &'static HelpUrls,
    metrics: Option<crate::metrics::HttpMetrics>,
}

impl RequestLayer {
    pub fn new(help: &'static HelpUrls, metrics: Option<crate::metrics::HttpMetrics>) -> Self {
        Self { help, metrics }
    }
}

impl<S, B> Transform<S, ServiceRequest> for RequestLayer
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Transform = RequestService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(RequestService {
            service,
            help: self.help,
            // One per worker: each keeps the series it has used.
            metrics: self
                .metrics
                .as_ref()
                .map(|m| std::rc::Rc::new(m.recorder())),
        }))
    }
}

pub struct RequestService<S> {
    service: S,
    help: &'static HelpUrls,
    metrics: Option<std::rc::Rc<crate::metrics::Recorder>>,
}

impl<S, B> Service<ServiceRequest> for RequestService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error>,
{
    type Response = ServiceResponse<B>;
    type Error = actix_web::Error;
    type Future = Served<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let started = Instant::now();
        let context = RequestContext::begin(&req, self.help);
        let span = context.span();
        let https = req.app_config().secure();
        Served {
            inner: context.serve(Outcome {
                inner: self.service.call(req),
                started,
                metrics: self.metrics.clone(),
            }),
            span,
            https,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request being served with its context; the response gets the headers every
    /// response carries.
    pub struct Served<F> {
        #[pin]
        inner: TaskLocalFuture<RequestContext, Outcome<F>>,
        span: tracing::Span,
        https: bool,
    }
}

pin_project_lite::pin_project! {
    /// The routes' answer, logged and counted while the request's context is still set.
    pub struct Outcome<F> {
        #[pin]
        inner: F,
        started: Instant,
        metrics: Option<std::rc::Rc<crate::metrics::Recorder>>,
    }
}

impl<F, B> Future for Outcome<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let Ok(res) = &result {
            let elapsed = this.started.elapsed();
            if let Some(metrics) = this.metrics {
                metrics.record(res, elapsed);
            }
            log_outcome(res.status().as_u16(), elapsed);
        }
        Poll::Ready(result)
    }
}

impl<F, B> Future for Served<F>
where
    F: Future<Output = Result<ServiceResponse<B>, actix_web::Error>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let _entered = this.span.enter();
        let mut result = std::task::ready!(this.inner.as_mut().poll(cx));
        if let Ok(res) = &mut result {
            let id = this
                .inner
                .as_mut()
                .take_value()
                .map(RequestContext::into_id);
            // Appended: no route sets these two (an insert would look for the old value
            // first, at nearly twice the cost).
            let headers = res.headers_mut();
            if let Some(id) = id {
                headers.append(REQUEST_ID_HEADER, id);
            }
            // Every response: a JSON error or a credential must never be sniffed into HTML.
            headers.append(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            // Only when stsvend itself serves https (behind a TLS-terminating proxy, the
            // proxy decides): a year, this host only.
            if *this.https {
                headers.insert(
                    header::STRICT_TRANSPORT_SECURITY,
                    HeaderValue::from_static("max-age=31536000"),
                );
            }
        }
        Poll::Ready(result)
    }
}
