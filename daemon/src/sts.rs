//! STS AssumeRoleWithSAML through aws-sdk-sts. SKELETON.
