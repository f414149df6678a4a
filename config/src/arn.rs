//! IAM role ARNs: the one parser behind the config's `role`, the roles a SAML assertion
//! offers, the partition that picks STS, sign-in and console hosts, and `samlctl`'s short
//! role names.
//!
//! It lives here, the lowest crate that the daemon and `samlctl` both depend on, so that
//! `samlctl config check` refuses exactly the ARNs the daemon would. It needs nothing beyond
//! `std`, which keeps it out of `samld-helper`'s way.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use crate::DEFAULT_FEDERATION_URL;

/// A role ARN, `arn:PARTITION:iam::ACCOUNT:role/[PATH/]NAME`, checked once and kept as written.
///
/// The rules are the IAM ones samld relies on: a partition of `aws` or `aws-…` (new
/// partitions keep that prefix), the `iam` service, no region, a 12-digit account and a role
/// name of 1 to 64 letters, digits and `+=,.@_-`. The path only has to be free of blanks:
/// IAM allows none there and the assertion parser always refused them, but nothing ever
/// checked more, and refusing a path IAM accepts would lock its roles out.
///
/// Two `RoleArn`s are equal when their text is: IAM compares ARNs as strings, and STS is
/// handed the text, not a normalised form.
#[derive(Clone)]
pub struct RoleArn {
    text: String,
    /// Byte ranges into `text`, found while parsing so the accessors never parse again.
    partition: (usize, usize),
    account: (usize, usize),
    /// Where `role/` ends: the path (if any) and the name follow.
    resource: usize,
    /// Where the name starts, after the last `/`.
    name: usize,
}

/// Why a string is not a role ARN.
///
/// Deliberately free of the string itself: callers already show what they were given, and
/// repeating it in every layer only makes messages longer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleArnError {
    /// Not `arn:` followed by five colon-separated fields.
    NotAnArn,
    /// The partition is neither `aws` nor `aws-` followed by lowercase letters, digits and
    /// dashes.
    Partition,
    /// The service is not `iam`.
    Service,
    /// The region field is not empty; IAM is global.
    Region,
    /// The account is not 12 digits.
    Account,
    /// The resource is not `role/…` (a `saml-provider/…`, a `user/…`).
    NotARole,
    /// The path holds a blank.
    Path,
    /// The role name is not 1 to 64 letters, digits and `+=,.@_-`.
    Name,
}

impl fmt::Display for RoleArnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RoleArnError::NotAnArn => "not an ARN like arn:PARTITION:iam::ACCOUNT:role/NAME",
            RoleArnError::Partition => "the partition is not aws or aws-… (aws-us-gov, aws-cn)",
            RoleArnError::Service => "the service is not iam",
            RoleArnError::Region => "an IAM ARN has no region",
            RoleArnError::Account => "the account is not 12 digits",
            RoleArnError::NotARole => "the resource is not role/NAME",
            RoleArnError::Path => "the role's path holds a blank",
            RoleArnError::Name => {
                "the role name is not 1 to 64 letters, digits and +=,.@_- characters"
            }
        })
    }
}

impl std::error::Error for RoleArnError {}

/// The AWS partitions samld knows the endpoints of.
///
/// Others (`aws-iso`, `aws-iso-b`, …) are valid in a [`RoleArn`] but have no entry here:
/// samld has never had their hosts, and a configured `region`, `sts_endpoint` or
/// `federation_url` is how a user of one points samld at them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Partition {
    /// `aws`: the commercial regions.
    Aws,
    /// `aws-us-gov`: AWS GovCloud (US).
    UsGov,
    /// `aws-cn`: the China regions.
    China,
}

impl Partition {
    /// Every partition samld knows the hosts of.
    pub const ALL: [Partition; 3] = [Partition::Aws, Partition::UsGov, Partition::China];

    /// The web sign-in host that receives SAML posts (`https://HOST/saml`); regional ones,
    /// such as `us-east-1.signin.aws.amazon.com`, are its subdomains.
    pub fn signin_host(self) -> &'static str {
        match self {
            Partition::Aws => "signin.aws.amazon.com",
            Partition::UsGov => "signin.amazonaws-us-gov.com",
            Partition::China => "signin.amazonaws.cn",
        }
    }

    /// The domain under which all of this partition's web sites (console, sign-in) live.
    pub fn web_domain(self) -> &'static str {
        match self {
            Partition::Aws => "amazon.com",
            Partition::UsGov => "amazonaws-us-gov.com",
            Partition::China => "amazonaws.cn",
        }
    }

    /// Whether `host` is `domain` or one of its subdomains (ASCII case-insensitive).
    pub fn host_is_under(host: &str, domain: &str) -> bool {
        let host = host.to_ascii_lowercase();
        host == domain || host.ends_with(&format!(".{domain}"))
    }

    /// Whether `host` belongs to one of AWS's own web sites, in any known partition (whose
    /// cookies and pages a browser sign-in never hands on).
    pub fn is_aws_web_host(host: &str) -> bool {
        Partition::ALL
            .iter()
            .any(|p| Partition::host_is_under(host, p.web_domain()))
    }

    /// The partition whose endpoints serve the role ARN `text`: its own when samld knows it,
    /// else the commercial one.
    ///
    /// Lenient on purpose: the hosts must be chosen for whatever ARN reaches STS or the
    /// console, and the commercial endpoints are what samld used before it knew of
    /// partitions at all.
    pub fn of_role_arn(text: &str) -> Partition {
        text.parse::<RoleArn>()
            .ok()
            .and_then(|arn| arn.partition())
            .unwrap_or(Partition::Aws)
    }

    /// The region whose STS endpoint to use when an account sets neither `region` nor
    /// `sts_endpoint`. `None` means the global endpoint, which only the commercial partition
    /// has; the others' first regions always have STS active.
    pub fn default_sts_region(self) -> Option<&'static str> {
        match self {
            Partition::Aws => None,
            Partition::UsGov => Some("us-gov-west-1"),
            Partition::China => Some("cn-north-1"),
        }
    }

    /// The sign-in federation endpoint of this partition.
    pub fn federation_url(self) -> &'static str {
        match self {
            Partition::Aws => DEFAULT_FEDERATION_URL,
            Partition::UsGov => "https://signin.amazonaws-us-gov.com/federation",
            Partition::China => "https://signin.amazonaws.cn/federation",
        }
    }

    /// The console's home page in this partition.
    pub fn console_url(self) -> &'static str {
        match self {
            Partition::Aws => "https://console.aws.amazon.com/",
            Partition::UsGov => "https://console.amazonaws-us-gov.com/",
            Partition::China => "https://console.amazonaws.cn/",
        }
    }
}

impl RoleArn {
    /// The ARN exactly as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The partition, when it is one samld knows the endpoints of.
    pub fn partition(&self) -> Option<Partition> {
        match &self.text[self.partition.0..self.partition.1] {
            "aws" => Some(Partition::Aws),
            "aws-us-gov" => Some(Partition::UsGov),
            "aws-cn" => Some(Partition::China),
            _ => None,
        }
    }

    /// The 12-digit account the role lives in.
    pub fn account_id(&self) -> &str {
        &self.text[self.account.0..self.account.1]
    }

    /// The role's name, the last segment (`Deploy` in `role/ops/Deploy`): what users type,
    /// and what IAM keeps unique within an account whatever the path.
    pub fn name(&self) -> &str {
        &self.text[self.name..]
    }

    /// The role's IAM path, with its slashes: `/` for none, `/ops/` for `role/ops/Deploy`.
    pub fn path(&self) -> &str {
        // The slash before the name closes the path, and `role/`'s own slash opens it.
        &self.text[self.resource - 1..self.name]
    }
}

/// Where the checked fields of an IAM ARN sit in its text.
struct IamFields {
    partition: (usize, usize),
    account: (usize, usize),
    resource: usize,
}

/// Splits `arn:PARTITION:iam::ACCOUNT:RESOURCE`, checking everything but the resource, which
/// role and SAML provider ARNs spell differently.
fn iam_arn(text: &str) -> Result<IamFields, RoleArnError> {
    // The resource may itself hold colons (IAM paths allow them), hence at most six fields.
    let fields: Vec<&str> = text.splitn(6, ':').collect();
    let ["arn", partition, service, region, account, _resource] = fields[..] else {
        return Err(RoleArnError::NotAnArn);
    };
    let partition_ok = partition == "aws"
        || partition.strip_prefix("aws-").is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if !partition_ok {
        return Err(RoleArnError::Partition);
    }
    if service != "iam" {
        return Err(RoleArnError::Service);
    }
    if !region.is_empty() {
        return Err(RoleArnError::Region);
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RoleArnError::Account);
    }
    let partition_start = "arn:".len();
    let partition_end = partition_start + partition.len();
    // The service and the empty region checked above are exactly `:iam::`.
    let account_start = partition_end + ":iam::".len();
    let account_end = account_start + account.len();
    Ok(IamFields {
        partition: (partition_start, partition_end),
        account: (account_start, account_end),
        resource: account_end + ":".len(),
    })
}

impl FromStr for RoleArn {
    type Err = RoleArnError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fields = iam_arn(text)?;
        let Some(path_and_name) = text[fields.resource..].strip_prefix("role/") else {
            return Err(RoleArnError::NotARole);
        };
        let resource = fields.resource + "role/".len();
        let name = match path_and_name.rfind('/') {
            Some(slash) => {
                if path_and_name[..slash]
                    .bytes()
                    .any(|b| b.is_ascii_whitespace())
                {
                    return Err(RoleArnError::Path);
                }
                resource + slash + 1
            }
            None => resource,
        };
        if !is_role_name(&text[name..]) {
            return Err(RoleArnError::Name);
        }
        Ok(RoleArn {
            text: text.to_owned(),
            partition: fields.partition,
            account: fields.account,
            resource,
            name,
        })
    }
}

impl fmt::Display for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for RoleArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The offsets are derived from the text; showing them would only be noise.
        f.debug_tuple("RoleArn").field(&self.text).finish()
    }
}

impl AsRef<str> for RoleArn {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl PartialEq for RoleArn {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for RoleArn {}

impl Hash for RoleArn {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl PartialEq<str> for RoleArn {
    fn eq(&self, other: &str) -> bool {
        self.text == other
    }
}

impl PartialEq<&str> for RoleArn {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl PartialEq<String> for RoleArn {
    fn eq(&self, other: &String) -> bool {
        &self.text == other
    }
}

impl From<RoleArn> for String {
    fn from(arn: RoleArn) -> String {
        arn.text
    }
}

/// Whether `text` is a SAML provider ARN, `arn:PARTITION:iam::ACCOUNT:saml-provider/NAME`,
/// the other half of an assertion's Role value.
///
/// It shares [`RoleArn`]'s partition and account rules. The name may hold neither a slash
/// (providers have no path) nor a blank or a comma, which would split the Role value.
pub fn is_saml_provider_arn(text: &str) -> bool {
    let Ok(fields) = iam_arn(text) else {
        return false;
    };
    text[fields.resource..]
        .strip_prefix("saml-provider/")
        .is_some_and(|name| {
            !name.is_empty()
                && !name
                    .bytes()
                    .any(|b| b == b'/' || b == b',' || b.is_ascii_whitespace())
        })
}

/// IAM role names: 1 to 64 of letters, digits and `+=,.@_-`. Also what a config's bare
/// `role` must be.
pub(crate) fn is_role_name(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_of_every_partition_with_and_without_paths() {
        // (ARN, partition, account, path, name)
        let cases = [
            (
                "arn:aws:iam::012345678987:role/AcmeJumpCloudAdminRO",
                Some(Partition::Aws),
                "012345678987",
                "/",
                "AcmeJumpCloudAdminRO",
            ),
            (
                "arn:aws-us-gov:iam::123456789012:role/path/to/Admin",
                Some(Partition::UsGov),
                "123456789012",
                "/path/to/",
                "Admin",
            ),
            (
                "arn:aws-cn:iam::210987654321:role/ops/Deploy",
                Some(Partition::China),
                "210987654321",
                "/ops/",
                "Deploy",
            ),
            (
                "arn:aws-cn:iam::012345678987:role/a+b=c,d.e@f_g-h",
                Some(Partition::China),
                "012345678987",
                "/",
                "a+b=c,d.e@f_g-h",
            ),
            // A partition samld has no endpoints for is still a valid ARN.
            (
                "arn:aws-iso-b:iam::123456789012:role/X",
                None,
                "123456789012",
                "/",
                "X",
            ),
            // IAM paths may hold colons and empty segments; only the name is constrained.
            (
                "arn:aws:iam::123456789012:role/a:b//c/N",
                Some(Partition::Aws),
                "123456789012",
                "/a:b//c/",
                "N",
            ),
        ];
        for (text, partition, account, path, name) in cases {
            let arn: RoleArn = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(arn.partition(), partition, "{text}");
            assert_eq!(arn.account_id(), account, "{text}");
            assert_eq!(arn.path(), path, "{text}");
            assert_eq!(arn.name(), name, "{text}");
            assert_eq!(arn.to_string(), text);
            assert_eq!(arn.as_str(), text);
            assert_eq!(arn, text);
        }
    }

    #[test]
    fn what_is_not_a_role_arn_says_why() {
        let long = format!("arn:aws:iam::123456789012:role/{}", "x".repeat(65));
        let cases = [
            ("", RoleArnError::NotAnArn),
            ("garbage", RoleArnError::NotAnArn),
            ("Admin", RoleArnError::NotAnArn),
            ("arn:aws:iam::123456789012", RoleArnError::NotAnArn),
            ("ARN:aws:iam::123456789012:role/A", RoleArnError::NotAnArn),
            ("arn::iam::012345678987:role/Admin", RoleArnError::Partition),
            (
                "arn:azure:iam::123456789012:role/A",
                RoleArnError::Partition,
            ),
            ("arn:aws-:iam::123456789012:role/A", RoleArnError::Partition),
            ("arn:AWS:iam::123456789012:role/A", RoleArnError::Partition),
            (
                "arn:aws:sts::012345678987:role/Admin",
                RoleArnError::Service,
            ),
            (
                "arn:aws:iam:us-east-1:012345678987:role/Admin",
                RoleArnError::Region,
            ),
            ("arn:aws:iam::12345:role/Admin", RoleArnError::Account),
            ("arn:aws:iam::12345678901:role/A", RoleArnError::Account),
            ("arn:aws:iam::12345678901a:role/A", RoleArnError::Account),
            (
                "arn:aws:iam::012345678987:user/Admin",
                RoleArnError::NotARole,
            ),
            (
                "arn:aws:iam::012345678987:Role/Admin",
                RoleArnError::NotARole,
            ),
            // A SAML provider ARN is the other half of a Role value, never the role.
            (
                "arn:aws:iam::123456789012:saml-provider/JumpCloud",
                RoleArnError::NotARole,
            ),
            (
                "arn:aws-us-gov:iam::123456789012:saml-provider/JumpCloud",
                RoleArnError::NotARole,
            ),
            ("arn:aws:iam::012345678987:role/", RoleArnError::Name),
            ("arn:aws:iam::012345678987:role/ops/", RoleArnError::Name),
            ("arn:aws:iam::012345678987:role/Ad min", RoleArnError::Name),
            ("arn:aws:iam::012345678987:role/a:b", RoleArnError::Name),
            ("arn:aws:iam::012345678987:role/é", RoleArnError::Name),
            (long.as_str(), RoleArnError::Name),
            ("arn:aws:iam::012345678987:role/o ps/A", RoleArnError::Path),
            ("arn:aws:iam::012345678987:role/ops\t/A", RoleArnError::Path),
        ];
        for (text, why) in cases {
            assert_eq!(text.parse::<RoleArn>().unwrap_err(), why, "{text:?}");
        }
    }

    #[test]
    fn saml_provider_arns_share_the_partition_and_account_rules() {
        for good in [
            "arn:aws:iam::123456789012:saml-provider/JumpCloud",
            "arn:aws-cn:iam::123456789012:saml-provider/J.C-1",
        ] {
            assert!(is_saml_provider_arn(good), "{good}");
        }
        for bad in [
            "arn:aws:iam::123456789012:role/JumpCloud",
            "arn:aws:iam::12345678901:saml-provider/JumpCloud",
            "arn:azure:iam::123456789012:saml-provider/JumpCloud",
            "arn:aws:iam::123456789012:saml-provider/",
            "arn:aws:iam::123456789012:saml-provider/a/b",
            "arn:aws:iam::123456789012:saml-provider/a b",
            "garbage",
        ] {
            assert!(!is_saml_provider_arn(bad), "{bad}");
        }
    }

    #[test]
    fn partitions_pick_their_hosts_and_unknown_ones_fall_back_to_aws() {
        let of = Partition::of_role_arn;
        // (role ARN, the partition it is in)
        const CASES: &[(&str, Partition)] = &[
            ("arn:aws:iam::123456789012:role/A", Partition::Aws),
            ("arn:aws-us-gov:iam::123456789012:role/A", Partition::UsGov),
            ("arn:aws-cn:iam::123456789012:role/A", Partition::China),
            ("arn:aws-iso:iam::123456789012:role/A", Partition::Aws),
            ("garbage", Partition::Aws),
        ];
        for &(arn, want) in CASES {
            assert_eq!(of(arn), want, "{arn:?}");
        }
        assert_eq!(Partition::Aws.federation_url(), DEFAULT_FEDERATION_URL);
        assert_eq!(
            Partition::UsGov.console_url(),
            "https://console.amazonaws-us-gov.com/"
        );
        assert_eq!(
            Partition::China.console_url(),
            "https://console.amazonaws.cn/"
        );
        assert_eq!(Partition::Aws.default_sts_region(), None);
        assert_eq!(Partition::UsGov.default_sts_region(), Some("us-gov-west-1"));
        assert_eq!(Partition::China.default_sts_region(), Some("cn-north-1"));
    }
}
