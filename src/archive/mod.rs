//! Several archives behind one endpoint. Each `Archive` owns what `vend` has one of: the
//! deployment as it sees it (its role, region, buckets, policy mode, S3 settings), its scoper,
//! and its vendor (STS client, guard and budget, credential cache and single flight). The
//! `Archives` router finds the archive that owns a bucket, the way S3 Access Grants match a
//! target to a registered location, so that any `s3://` URL gets the right credential.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::vend::narrow::Target;
use crate::vend::scope::Scoper;
use crate::vend::sts::{AwsSts, StsApi};
use crate::vend::vendor::Vendor;

pub struct Archive {
    pub name: Box<str>,
    pub title: Box<str>,
    /// Where its own Earthdata-compatible endpoints are (`<path>/s3credentials`).
    pub path: Box<str>,
    /// The deployment as this archive sees it (`Settings::for_archive`): what every
    /// function that builds or describes a credential reads.
    pub settings: Arc<Settings>,
    pub scopes: Scoper,
    pub vendor: Arc<Vendor>,
    /// What a caller outside the archive's region is told (`stsvend-warning`), made once.
    pub out_of_region_warning: actix_web::http::header::HeaderValue,
}

impl Archive {
    /// Whether `bucket` is one of this archive's, in its region (the only ones ever granted).
    /// Whether `bucket` is one of this archive's.
    pub fn serves(&self, bucket: &str) -> bool {
        self.settings.buckets.iter().any(|b| b.name == bucket)
    }

    pub fn serves_in_region(&self, bucket: &str) -> bool {
        self.settings
            .buckets
            .iter()
            .any(|b| b.name == bucket && b.region == self.settings.sts.region)
    }

    pub fn bucket(&self, name: &str) -> Option<&crate::config::Bucket> {
        self.settings.buckets.iter().find(|b| b.name == name)
    }
}

/// What the archives' STS clients are built from.
pub struct Clients {
    /// One client for every archive instead of one per archive's `[sts]` (tests inject one).
    pub sts: Option<Arc<dyn StsApi>>,
    /// The service's own AWS credentials, instead of the default chain.
    pub aws_credentials: Option<aws_sdk_sts::config::Credentials>,
}

pub struct Archives {
    list: Vec<Arc<Archive>>,
    default: usize,
    by_bucket: HashMap<Box<str>, usize, foldhash::fast::RandomState>,
}

impl Archives {
    /// Every archive of `settings`, each with its own scoper, STS client and vendor (sharing
    /// the fleet's Redis when there is one). Refuses an archive whose worst-case scope AWS
    /// would not accept.
    pub async fn build(
        settings: &Settings,
        clients: Clients,
        clock: Arc<dyn Clock>,
        fleet: Option<Arc<crate::fleet::Fleet>>,
    ) -> Result<Self, ConfigError> {
        let mut list = Vec::with_capacity(settings.archives.len());
        let mut by_bucket = HashMap::with_hasher(foldhash::fast::RandomState::default());
        for (i, a) in settings.archives.iter().enumerate() {
            let view = settings.for_archive(i);
            let scopes = Scoper::new(&view).map_err(|e| e.in_archive(i))?;
            let sts: Arc<dyn StsApi> = match &clients.sts {
                Some(sts) => sts.clone(),
                None => Arc::new(
                    AwsSts::from_settings(&view.sts, clients.aws_credentials.clone()).await,
                ),
            };
            let mut vendor = Vendor::new(sts, &view, clock.clone());
            if let Some(fleet) = &fleet {
                vendor = vendor.with_fleet(fleet.clone());
            }
            if crate::vend::policy::worst_case(&view).is_none() {
                tracing::warn!(
                    archive = %a.name,
                    region = %view.sts.region,
                    "no bucket of this archive is in its region: its credential requests will be refused"
                );
            }
            for b in &a.buckets {
                by_bucket.insert(b.name.as_str().into(), i);
            }
            list.push(Arc::new(Archive {
                name: a.name.as_str().into(),
                title: a.title.as_str().into(),
                path: a.path.as_str().into(),
                settings: Arc::new(view),
                scopes,
                vendor: Arc::new(vendor),
                out_of_region_warning: crate::network::out_of_region_warning(&[&a.sts.region]),
            }));
        }
        Ok(Self {
            list,
            default: settings.default_archive,
            by_bucket,
        })
    }

    /// The archive a request without targets is served by.
    #[inline]
    pub fn default_archive(&self) -> &Archive {
        &self.list[self.default]
    }

    pub fn all(&self) -> &[Arc<Archive>] {
        &self.list
    }

    /// The archive that lists `bucket` (in any region).
    pub fn owner(&self, bucket: &str) -> Option<&Archive> {
        self.by_bucket.get(bucket).map(|&i| &*self.list[i])
    }

    pub fn named(&self, name: &str) -> Option<&Archive> {
        self.list.iter().find(|a| &*a.name == name).map(|a| &**a)
    }

    /// The one archive `targets` belong to: the default when there are none (or none of
    /// their buckets is any archive's, so that the refusal is today's); Err: the archives
    /// they span, in configuration order (one credential is one role's session).
    pub fn route(&self, targets: &[Target]) -> Result<&Archive, Vec<&Archive>> {
        let mut found: Option<usize> = None;
        let mut several = false;
        for t in targets {
            if let Some(&i) = self.by_bucket.get(t.bucket.as_str()) {
                match found {
                    Some(j) if j != i => several = true,
                    _ => found = Some(i),
                }
            }
        }
        if several {
            let mut touched: Vec<usize> = targets
                .iter()
                .filter_map(|t| self.by_bucket.get(t.bucket.as_str()).copied())
                .collect();
            touched.sort_unstable();
            touched.dedup();
            return Err(touched.into_iter().map(|i| &*self.list[i]).collect());
        }
        Ok(&self.list[found.unwrap_or(self.default)])
    }

    /// `targets` grouped by the archive that owns each, in configuration order; targets no
    /// archive owns are returned apart.
    pub fn split<'t>(
        &self,
        targets: &'t [Target],
    ) -> (Vec<(&Archive, Vec<Target>)>, Vec<&'t Target>) {
        let mut groups: Vec<(usize, Vec<Target>)> = Vec::new();
        let mut unknown = Vec::new();
        for t in targets {
            match self.by_bucket.get(t.bucket.as_str()) {
                Some(&i) => match groups.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, ts)) => ts.push(t.clone()),
                    None => groups.push((i, vec![t.clone()])),
                },
                None => unknown.push(t),
            }
        }
        groups.sort_by_key(|(i, _)| *i);
        (
            groups
                .into_iter()
                .map(|(i, ts)| (&*self.list[i], ts))
                .collect(),
            unknown,
        )
    }

    /// Every archive's vendor (revocations forget a user in each).
    pub fn vendors(&self) -> Vec<Arc<Vendor>> {
        self.list.iter().map(|a| a.vendor.clone()).collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use futures_util::future::BoxFuture;

    use super::*;
    use crate::vend::sts::{AssumeRoleRequest, StsCredentials, StsError};

    struct NoSts;

    impl StsApi for NoSts {
        fn assume_role<'a>(
            &'a self,
            _: &'a AssumeRoleRequest,
        ) -> BoxFuture<'a, Result<StsCredentials, StsError>> {
            Box::pin(async { Err(StsError::Unavailable("not in this test".into())) })
        }
    }

    async fn three() -> Archives {
        use figment::providers::{Format, Toml};
        let (_, settings) = crate::config::from_figment(
            figment::Figment::from(Toml::string(crate::config::DEFAULT_TOML))
                .merge(Toml::string(
                    r#"
[server]
public_url = "http://127.0.0.1:1"
[oidc]
issuer = "http://127.0.0.1:2"
client_id = "c"
[session]
secure = false
[sts]
role_arn = "arn:aws:iam::123456789012:role/r"
[[buckets]]
name = "main-a"
region = "us-west-2"
[[archives]]
name = "two"
sts = { role_arn = "arn:aws:iam::210987654321:role/r" }
[[archives.buckets]]
name = "two-a"
region = "us-west-2"
[[archives]]
name = "three"
sts = { role_arn = "arn:aws:iam::210987654321:role/r3" }
[[archives.buckets]]
name = "three-a"
region = "us-west-2"
"#,
                ))
                .merge(figment::providers::Serialized::default(
                    "session.key",
                    "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKg==",
                )),
        )
        .unwrap();
        Archives::build(
            &settings,
            Clients {
                sts: Some(Arc::new(NoSts)),
                aws_credentials: None,
            },
            Arc::new(crate::clock::SystemClock),
            None,
        )
        .await
        .unwrap()
    }

    fn t(s: &str) -> Target {
        Target::parse(s).unwrap()
    }

    /// Where `targets` go: the one archive's name, or the archives they span.
    fn routed(a: &Archives, targets: &[Target]) -> Result<String, Vec<String>> {
        a.route(targets)
            .map(|one| one.name.to_string())
            .map_err(|several| several.iter().map(|x| x.name.to_string()).collect())
    }

    #[tokio::test]
    async fn targets_route_to_the_archive_that_owns_them_and_several_are_named() {
        let a = three().await;
        assert_eq!(routed(&a, &[]), Ok("main".into()));
        assert_eq!(routed(&a, &[t("s3://two-a/x/")]), Ok("two".into()));
        // Unknown buckets do not count: the owner of the others answers (and refuses them).
        assert_eq!(
            routed(&a, &[t("s3://nobody-here/"), t("s3://three-a/")]),
            Ok("three".into())
        );
        assert_eq!(routed(&a, &[t("s3://nobody-here/")]), Ok("main".into()));
        assert_eq!(
            routed(
                &a,
                &[t("s3://three-a/"), t("s3://main-a/"), t("s3://three-a/p/")]
            ),
            Err(vec!["main".into(), "three".into()])
        );
    }

    #[tokio::test]
    async fn a_bundle_splits_targets_by_archive_in_configuration_order() {
        let a = three().await;
        let targets = [
            t("s3://three-a/"),
            t("s3://main-a/x/"),
            t("s3://nobody-here/"),
            t("s3://main-a/y/"),
        ];
        let (parts, unknown) = a.split(&targets);
        let shown: Vec<(String, Vec<String>)> = parts
            .iter()
            .map(|(a, ts)| {
                (
                    a.name.to_string(),
                    ts.iter().map(Target::to_string).collect(),
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                (
                    "main".to_owned(),
                    vec!["s3://main-a/x/".to_owned(), "s3://main-a/y/".to_owned()]
                ),
                ("three".to_owned(), vec!["s3://three-a/".to_owned()]),
            ]
        );
        assert_eq!(unknown.len(), 1);
        assert_eq!(&*a.owner("two-a").unwrap().name, "two");
        assert!(a.owner("nobody-here").is_none());
        assert_eq!(a.vendors().len(), 3);
    }
}
