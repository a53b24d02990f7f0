//! STS behind a trait, so the vending logic is tested with fakes and runs against AWS, moto,
//! MinIO or Ceph RGW unchanged. The real client comes from the `aws-config` default chain
//! (env, profile, web identity, ECS, IMDS) with the configured region, endpoint and timeouts.

use std::fmt;

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_sts::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sts::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_sts::error::BoxError;
use aws_sdk_sts::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sts::types::{PolicyDescriptorType, Tag};
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};

use crate::config::StsSettings;

/// One AssumeRole call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssumeRoleRequest {
    /// The raw user id the credential is for. Not sent to STS (the session name stands for
    /// it there); part of the cache key, so users never share a credential even if their
    /// session names were ever to collide.
    pub user_id: String,
    pub role_arn: String,
    /// Sent as `ExternalId` (`sts.external_id`).
    pub external_id: Option<String>,
    pub role_session_name: String,
    pub source_identity: Option<String>,
    /// The inline session policy, if any.
    pub policy: Option<String>,
    /// Managed session policies.
    pub policy_arns: Vec<String>,
    pub duration_seconds: u32,
    pub tags: Vec<(String, String)>,
    /// Sign no later than this (the fleet budget's slot plus its grace), or do not send: a
    /// request signed later is answered `Busy { reason: SLOT_MISSED }` without leaving.
    pub sign_by: Option<std::time::Instant>,
}

/// `StsError::Busy`'s reason when a request missed its fleet budget slot before signing.
pub const SLOT_MISSED: &str = "fleet_slot_missed";

/// Enforces `sign_by` right before the SDK signs (no await lies between this hook and the
/// signature, whose `X-Amz-Date` is what STS counts): however late a busy machine runs the
/// SDK's preparation, a request is sent within its slot or not at all.
#[derive(Debug)]
struct SignBy(std::time::Instant);

#[derive(Debug, thiserror::Error)]
#[error("the fleet budget slot passed before the request was signed")]
struct SlotMissed;

impl Intercept for SignBy {
    fn name(&self) -> &'static str {
        "stsvend-sign-by"
    }

    fn read_before_signing(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if std::time::Instant::now() > self.0 {
            return Err(Box::new(SlotMissed));
        }
        Ok(())
    }
}

fn missed_slot(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<SlotMissed>() {
            return true;
        }
        next = e.source();
    }
    false
}

/// Temporary credentials. `Debug` never shows the secret or the token.
#[derive(Clone)]
pub struct StsCredentials {
    pub access_key_id: String,
    pub secret_access_key: SecretString,
    pub session_token: SecretString,
    pub expiration: DateTime<Utc>,
    /// Percentage of the packed policy/tags budget used (AWS reports it; over 100 fails).
    pub packed_policy_size: Option<i32>,
    /// The expiry as the two text forms clients read, rendered once per credential rather
    /// than on every cached response.
    pub expiration_earthdata: String,
    pub expiration_rfc3339: String,
    /// No character of the key id, secret or token needs escaping in JSON (always so for
    /// AWS's, checked once here so responses need not scan them again).
    plain: bool,
}

impl fmt::Debug for StsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("session_token", &"<redacted>")
            .field("expiration", &self.expiration)
            .field("packed_policy_size", &self.packed_policy_size)
            .finish()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StsError {
    /// Throttled after the SDK's retries.
    #[error("STS is throttling requests")]
    Throttled,
    /// Timeout, connection failure, 5xx.
    #[error("STS could not be reached: {0}")]
    Unavailable(String),
    /// STS answered and said no (AccessDenied, PackedPolicyTooLarge, validation...).
    #[error("STS refused the request: {code}: {message}")]
    Rejected { code: String, message: String },
    /// Not sent: the circuit breaker is open, or the in-flight cap or rate budget is used up.
    #[error("STS call not attempted ({reason})")]
    Busy {
        reason: &'static str,
        retry_after: std::time::Duration,
    },
    /// Not sent: this user has caused as many new credentials as one user may for now.
    #[error("STS call not attempted (this user's budget of new credentials is used up)")]
    UserBudget { retry_after: std::time::Duration },
}

impl StsError {
    /// Transient: worth serving a cached credential and asking the client to retry.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Throttled | Self::Unavailable(_) | Self::Busy { .. }
        )
    }
}

pub trait StsApi: Send + Sync + 'static {
    fn assume_role<'a>(
        &'a self,
        request: &'a AssumeRoleRequest,
    ) -> BoxFuture<'a, Result<StsCredentials, StsError>>;
}

/// The real STS client.
pub struct AwsSts {
    client: aws_sdk_sts::Client,
}

impl AwsSts {
    pub async fn from_settings(
        settings: &StsSettings,
        credentials: Option<aws_sdk_sts::config::Credentials>,
    ) -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(settings.connect_timeout)
            .operation_timeout(settings.timeout)
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .timeout_config(timeouts);
        if let Some(endpoint) = &settings.endpoint_url {
            loader = loader.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        if let Some(credentials) = credentials {
            loader = loader.credentials_provider(credentials);
        }
        let shared = loader.load().await;
        Self {
            client: aws_sdk_sts::Client::new(&shared),
        }
    }
}

fn map_error<E, R>(err: SdkError<E, R>) -> StsError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    if std::error::Error::source(&err).is_some_and(missed_slot) {
        return StsError::Busy {
            reason: SLOT_MISSED,
            retry_after: std::time::Duration::from_secs(1),
        };
    }
    match &err {
        SdkError::TimeoutError(_) => StsError::Unavailable("timed out".into()),
        SdkError::DispatchFailure(e) => StsError::Unavailable(format!("{e:?}")),
        SdkError::ResponseError(_) => StsError::Unavailable("unreadable response".into()),
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("").to_owned();
            let message = service.err().message().unwrap_or("").to_owned();
            let status = format!("{:?}", service.raw());
            if code == "Throttling"
                || code == "ThrottlingException"
                || status.contains("status: 429")
            {
                StsError::Throttled
            } else if code.is_empty() && status.contains("status: 5") {
                // Ceph RGW answers errors with empty bodies: only the status is known.
                StsError::Unavailable("server error".into())
            } else {
                StsError::Rejected {
                    code: if code.is_empty() {
                        "Unknown".into()
                    } else {
                        code
                    },
                    message,
                }
            }
        }
        other => StsError::Unavailable(format!("{other:?}")),
    }
}

impl StsApi for AwsSts {
    fn assume_role<'a>(
        &'a self,
        request: &'a AssumeRoleRequest,
    ) -> BoxFuture<'a, Result<StsCredentials, StsError>> {
        Box::pin(async move {
            let tags = request
                .tags
                .iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| StsError::Rejected {
                    code: "InvalidTag".into(),
                    message: e.to_string(),
                })?;
            let output = self
                .client
                .assume_role()
                .role_arn(&request.role_arn)
                .role_session_name(&request.role_session_name)
                .set_external_id(request.external_id.clone())
                .set_source_identity(request.source_identity.clone())
                .set_policy(request.policy.clone())
                .set_policy_arns((!request.policy_arns.is_empty()).then(|| {
                    request
                        .policy_arns
                        .iter()
                        .map(|arn| PolicyDescriptorType::builder().arn(arn).build())
                        .collect()
                }))
                .duration_seconds(i32::try_from(request.duration_seconds).unwrap_or(3600))
                .set_tags((!tags.is_empty()).then_some(tags));
            let output = match request.sign_by {
                Some(deadline) => {
                    output
                        .customize()
                        .interceptor(SignBy(deadline))
                        .send()
                        .await
                }
                None => output.send().await,
            }
            .map_err(map_error)?;
            let creds = output
                .credentials()
                .ok_or_else(|| StsError::Unavailable("no credentials in the response".into()))?;
            let expiration = DateTime::from_timestamp(
                creds.expiration().secs(),
                creds.expiration().subsec_nanos(),
            )
            .ok_or_else(|| StsError::Unavailable("unreadable expiration".into()))?;
            // AWS now also reports SessionTokenUtilization, but moto, Ceph and MinIO send
            // only PackedPolicySize, the figure operators know.
            #[allow(deprecated)]
            let packed_policy_size = output.packed_policy_size();
            Ok(StsCredentials::new(
                creds.access_key_id().to_owned(),
                SecretString::from(creds.secret_access_key().to_owned()),
                SecretString::from(creds.session_token().to_owned()),
                expiration,
                packed_policy_size,
            ))
        })
    }
}

impl StsCredentials {
    pub fn new(
        access_key_id: String,
        secret_access_key: SecretString,
        session_token: SecretString,
        expiration: DateTime<Utc>,
        packed_policy_size: Option<i32>,
    ) -> Self {
        Self {
            access_key_id,
            secret_access_key,
            session_token,
            expiration,
            packed_policy_size,
            expiration_earthdata: expiration.format("%Y-%m-%d %H:%M:%S+00:00").to_string(),
            expiration_rfc3339: expiration.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            plain: false,
        }
        .checked()
    }

    fn checked(mut self) -> Self {
        self.plain = [
            self.access_key_id.as_str(),
            self.secret_access_key.expose_secret(),
            self.session_token.expose_secret(),
        ]
        .iter()
        .all(|v| !crate::json::needs_escaping(v.as_bytes()));
        self
    }

    /// Whether the key id, secret and token can go into JSON as they are.
    pub fn plain(&self) -> bool {
        self.plain
    }

    pub fn secret(&self) -> &str {
        self.secret_access_key.expose_secret()
    }

    pub fn token(&self) -> &str {
        self.session_token.expose_secret()
    }
}
