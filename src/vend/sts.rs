//! The STS client, built from the `aws-config` default credential chain (env, profile, web
//! identity, ECS, IMDS) with the configured region, optional endpoint and timeouts.

use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};

use crate::config::StsSettings;

pub async fn build_client(settings: &StsSettings) -> aws_sdk_sts::Client {
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
    let shared = loader.load().await;
    aws_sdk_sts::Client::new(&shared)
}
