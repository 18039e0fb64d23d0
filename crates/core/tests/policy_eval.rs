//! The policy evaluator against the IAM User Guide's documented behaviour.
//!
//! Most tests take a policy and its outcomes from a page of the guide, named in the
//! comment above each; the rest pin down labctl's own use (instance folders keyed by
//! `${aws:userid}`, a TLS-only bucket), malformed documents, and the wildcard matcher.

use std::time::{Duration, Instant};

use labctl_core::policy::{Decision, PolicyError, PolicySource, Request, evaluate, wildcard_match};
use proptest::prelude::*;
use serde_json::{Value, json};

use Decision::{Allow, ExplicitDeny, ImplicitDeny};

const ACCOUNT: &str = "123456789012";
const USER: &str = "arn:aws:iam::123456789012:user/carlossalazar";

fn decide(identity: &[Value], resource: Option<&Value>, request: &Request) -> Decision {
    evaluate(identity, resource, request).unwrap_or_else(|error| panic!("{error}"))
}

fn identity_only(policy: &Value, request: &Request) -> Decision {
    decide(std::slice::from_ref(policy), None, request)
}

/// A caller whose identity policy allows everything, to see what a Deny takes away.
fn allow_everything() -> Value {
    json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}})
}

fn with_allow_everything(deny: &Value, request: &Request) -> Decision {
    decide(&[allow_everything(), deny.clone()], None, request)
}

fn user_request(action: &str, resource: &str) -> Request {
    Request::new(USER, action, resource)
}

/// Explicit and implicit denies ("Policy evaluation logic").
mod policy_logic {
    use super::*;

    // "Policy evaluation logic" (Example identity-based and resource-based policy
    // evaluation): Carlos's DenyS3Logs beats both his identity policy and the bucket
    // policy that allow him his own bucket.
    #[test]
    fn explicit_deny_beats_allows_in_both_policy_types() {
        let identity = json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "AllowS3ListRead",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetBucketLocation",
                        "s3:GetAccountPublicAccessBlock",
                        "s3:ListAccessPoints",
                        "s3:ListAllMyBuckets"
                    ],
                    "Resource": "arn:aws:s3:::*"
                },
                {
                    "Sid": "AllowS3Self",
                    "Effect": "Allow",
                    "Action": "s3:*",
                    "Resource": ["arn:aws:s3:::carlossalazar/*", "arn:aws:s3:::carlossalazar"]
                },
                {
                    "Sid": "DenyS3Logs",
                    "Effect": "Deny",
                    "Action": "s3:*",
                    "Resource": "arn:aws:s3:::*log*"
                }
            ]
        });
        let bucket = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::123456789012:user/carlossalazar"},
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::carlossalazar/*", "arn:aws:s3:::carlossalazar"]
            }]
        });
        let to_logs = user_request("s3:PutObject", "arn:aws:s3:::carlossalazar-logs/file.txt");
        let to_own = user_request("s3:PutObject", "arn:aws:s3:::carlossalazar/file.txt");
        let ids = std::slice::from_ref(&identity);
        assert_eq!(decide(ids, Some(&bucket), &to_logs), ExplicitDeny);
        assert_eq!(decide(ids, Some(&bucket), &to_own), Allow);
    }

    // "Policy evaluation logic": "If one of the policy types allows the request and the
    // other doesn't, the request is still allowed."
    #[test]
    fn either_policy_type_alone_can_allow_within_an_account() {
        let bucket = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": {"AWS": USER},
                "Action": "s3:*",
                "Resource": ["arn:aws:s3:::carlossalazar/*", "arn:aws:s3:::carlossalazar"]
            }]
        });
        let nothing = json!({"Version": "2012-10-17", "Statement": []});
        let put = user_request("s3:PutObject", "arn:aws:s3:::carlossalazar/file.txt");
        assert_eq!(
            decide(std::slice::from_ref(&nothing), Some(&bucket), &put),
            Allow
        );
        assert_eq!(decide(&[nothing], None, &put), ImplicitDeny);
    }

    // "The difference between explicit and implicit denies": AllowGetList allows Get*
    // and List*, everything else in IAM is implicitly denied, and DenyReports explicitly
    // denies *Report even when another policy allows it.
    #[test]
    fn allowed_implicitly_denied_and_explicitly_denied_actions() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "AllowGetList", "Effect": "Allow", "Action": ["iam:Get*", "iam:List*"], "Resource": "*"},
                {"Sid": "DenyReports", "Effect": "Deny", "Action": "iam:*Report", "Resource": "*"}
            ]
        });
        let user = "arn:aws:iam::123456789012:user/alice";
        let ask = |action: &str| identity_only(&policy, &user_request(action, user));
        assert_eq!(ask("iam:GetUser"), Allow);
        assert_eq!(ask("iam:ListRoles"), Allow);
        assert_eq!(ask("iam:CreatePolicy"), ImplicitDeny);
        assert_eq!(ask("iam:GetOrganizationsAccessReport"), ExplicitDeny);

        let grants_report = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "iam:GenerateCredentialReport", "Resource": "*"}
        });
        let report = user_request("iam:GenerateCredentialReport", "*");
        assert_eq!(
            decide(std::slice::from_ref(&grants_report), None, &report),
            Allow
        );
        assert_eq!(
            decide(&[policy, grants_report], None, &report),
            ExplicitDeny
        );
    }

    // "IAM JSON policy elements: Action" (action_string in "Grammar of the IAM JSON
    // policy language"): action names are case-insensitive.
    #[test]
    fn actions_match_case_insensitively() {
        let policy = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "S3:getobject", "Resource": "*"}});
        let get = user_request("s3:GetObject", "arn:aws:s3:::b/k");
        assert_eq!(identity_only(&policy, &get), Allow);
    }

    // "Policy evaluation logic": with no policy at all, every request is implicitly denied.
    #[test]
    fn no_policy_is_an_implicit_deny() {
        let get = user_request("s3:GetObject", "arn:aws:s3:::b/k");
        assert_eq!(decide(&[], None, &get), ImplicitDeny);
    }
}

/// NotAction, NotResource and resource ARN wildcards.
mod policy_not_elements {
    use super::*;

    // "IAM JSON policy elements: NotAction" (NotAction with Allow): every S3 action on S3
    // resources but DeleteBucket; not ListAllMyBuckets, which needs the "*" resource; and
    // no other service's actions.
    #[test]
    fn not_action_with_allow_scoped_by_resource() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "NotAction": "s3:DeleteBucket", "Resource": "arn:aws:s3:::*"}
        });
        let ask =
            |action: &str, resource: &str| identity_only(&policy, &user_request(action, resource));
        assert_eq!(ask("s3:GetObject", "arn:aws:s3:::bucket/key"), Allow);
        assert_eq!(ask("s3:CreateBucket", "arn:aws:s3:::bucket"), Allow);
        assert_eq!(ask("s3:DeleteBucket", "arn:aws:s3:::bucket"), ImplicitDeny);
        assert_eq!(ask("s3:ListAllMyBuckets", "*"), ImplicitDeny);
        let instance = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
        assert_eq!(ask("ec2:RunInstances", instance), ImplicitDeny);
    }

    // "IAM JSON policy elements: NotAction": "allows users to access every action in every
    // AWS service except for IAM".
    #[test]
    fn not_action_with_allow_on_every_resource() {
        let policy = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}});
        let ask =
            |action: &str, resource: &str| identity_only(&policy, &user_request(action, resource));
        assert_eq!(ask("ec2:RunInstances", "*"), Allow);
        assert_eq!(ask("s3:ListAllMyBuckets", "*"), Allow);
        assert_eq!(
            ask("iam:CreateUser", "arn:aws:iam::123456789012:user/bob"),
            ImplicitDeny
        );
    }

    // "IAM JSON policy elements: NotAction" (NotAction with Deny): DenyAllUsersNotUsingMFA
    // denies everything but IAM unless MFA is present; it grants nothing itself.
    #[test]
    fn not_action_with_deny_and_bool_if_exists() {
        let deny = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "DenyAllUsersNotUsingMFA",
                "Effect": "Deny",
                "NotAction": "iam:*",
                "Resource": "*",
                "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}
            }]
        });
        let get = user_request("s3:GetObject", "arn:aws:s3:::b/k");
        let list_users = user_request("iam:ListUsers", "*");
        // BoolIfExists: no MFA key at all (long-term keys) is denied too.
        assert_eq!(with_allow_everything(&deny, &get), ExplicitDeny);
        let no_mfa = get.clone().with("aws:MultiFactorAuthPresent", "false");
        assert_eq!(with_allow_everything(&deny, &no_mfa), ExplicitDeny);
        let mfa = get.with("aws:MultiFactorAuthPresent", "true");
        assert_eq!(with_allow_everything(&deny, &mfa), Allow);
        let no_mfa_iam = list_users.with("aws:MultiFactorAuthPresent", "false");
        assert_eq!(with_allow_everything(&deny, &no_mfa_iam), Allow);
        // "this would not grant the user access to any actions".
        assert_eq!(identity_only(&deny, &mfa), ImplicitDeny);
    }

    // "IAM JSON policy elements: NotResource": HRPayroll may touch no S3 resource but the
    // Payroll folder; EC2 is out of the Deny's reach because its Action is s3:*.
    #[test]
    fn not_resource_with_deny() {
        let deny = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Deny",
                "Action": "s3:*",
                "NotResource": ["arn:aws:s3:::HRBucket/Payroll", "arn:aws:s3:::HRBucket/Payroll/*"]
            }
        });
        let ask = |action: &str, resource: &str| {
            with_allow_everything(&deny, &user_request(action, resource))
        };
        assert_eq!(
            ask("s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/june.csv"),
            Allow
        );
        assert_eq!(ask("s3:ListBucket", "arn:aws:s3:::HRBucket/Payroll"), Allow);
        assert_eq!(
            ask("s3:GetObject", "arn:aws:s3:::HRBucket/Other/x"),
            ExplicitDeny
        );
        assert_eq!(
            ask("s3:GetObject", "arn:aws:s3:::OtherBucket/Payroll/x"),
            ExplicitDeny
        );
        let instance = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0";
        assert_eq!(ask("ec2:TerminateInstances", instance), Allow);
        // "this policy does not grant the user access to any resources".
        let payroll = user_request("s3:GetObject", "arn:aws:s3:::HRBucket/Payroll/june.csv");
        assert_eq!(identity_only(&deny, &payroll), ImplicitDeny);
    }

    // "IAM JSON policy elements: Resource" (Using wildcards in resource ARNs): `*` within
    // the resource segment spans `/`, and `/` has no other significance.
    #[test]
    fn resource_wildcards_cross_slashes() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::DOC-EXAMPLE-BUCKET/*/test/*"}
        });
        let ask = |key: &str| {
            let resource = format!("arn:aws:s3:::DOC-EXAMPLE-BUCKET/{key}");
            identity_only(&policy, &user_request("s3:GetObject", &resource))
        };
        for key in [
            "1/test/object.jpg",
            "1/2/test/object.jpg",
            "1/2/test/3/object.jpg",
            "1/2/3/test/4/object.jpg",
            "1///test///object.jpg",
            "1/test/.jpg",
            "/test/object.jpg",
            "1/test/",
        ] {
            assert_eq!(ask(key), Allow, "{key}");
        }
        for key in ["1-test/object.jpg", "test/object.jpg", "1/2/test.jpg"] {
            assert_eq!(ask(key), ImplicitDeny, "{key}");
        }
    }

    // "IAM JSON policy elements: Resource": a wildcard stays within its ARN segment; a
    // "*" region matches any region but does not make up for another account.
    #[test]
    fn resource_wildcards_stay_in_their_segment() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "sqs:*", "Resource": "arn:aws:sqs:*:123456789012:queue*"}
        });
        let ask =
            |resource: &str| identity_only(&policy, &user_request("sqs:SendMessage", resource));
        assert_eq!(ask("arn:aws:sqs:us-east-2:123456789012:queue1"), Allow);
        assert_eq!(
            ask("arn:aws:sqs:us-east-2:999999999999:queue1"),
            ImplicitDeny
        );
        assert_eq!(
            ask("arn:aws:sqs:us-east-2:123456789012:other"),
            ImplicitDeny
        );
    }
}

/// Policy variables ("IAM policy elements: Variables and tags").
mod policy_variables {
    use super::*;

    /// The policy of "Amazon S3: Allows federated users access to their S3 home directory,
    /// programmatically and in the console".
    fn federated_home_directory() -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Sid": "S3ConsoleAccess",
                    "Effect": "Allow",
                    "Action": [
                        "s3:GetAccountPublicAccessBlock",
                        "s3:GetBucketAcl",
                        "s3:GetBucketLocation",
                        "s3:GetBucketPolicyStatus",
                        "s3:GetBucketPublicAccessBlock",
                        "s3:ListAccessPoints",
                        "s3:ListAllMyBuckets"
                    ],
                    "Resource": "*"
                },
                {
                    "Sid": "ListObjectsInBucket",
                    "Effect": "Allow",
                    "Action": "s3:ListBucket",
                    "Resource": "arn:aws:s3:::bucket-name",
                    "Condition": {"StringLike": {"s3:prefix": ["", "home/", "home/${aws:userid}/*"]}}
                },
                {
                    "Effect": "Allow",
                    "Action": "s3:*",
                    "Resource": [
                        "arn:aws:s3:::bucket-name/home/${aws:userid}",
                        "arn:aws:s3:::bucket-name/home/${aws:userid}/*"
                    ]
                }
            ]
        })
    }

    // "Amazon S3: Allows federated users access to their S3 home directory,
    // programmatically and in the console": `${aws:userid}` is `role-id:specified-name`,
    // e.g. AROAXXT2NJT7D3SIQN7Z6:John, whose folder is John's alone.
    #[test]
    fn home_directory_by_userid_admits_its_owner_only() {
        let policy = federated_home_directory();
        let john = |action: &str, resource: &str| {
            Request::new(
                "arn:aws:sts::123456789012:assumed-role/WebIdentity/John",
                action,
                resource,
            )
            .with("aws:userid", "AROAXXT2NJT7D3SIQN7Z6:John")
        };
        let own = "arn:aws:s3:::bucket-name/home/AROAXXT2NJT7D3SIQN7Z6:John/notes.txt";
        let other = "arn:aws:s3:::bucket-name/home/AROAXXT2NJT7D3SIQN7Z6:Mary/notes.txt";
        assert_eq!(identity_only(&policy, &john("s3:PutObject", own)), Allow);
        assert_eq!(identity_only(&policy, &john("s3:GetObject", own)), Allow);
        assert_eq!(
            identity_only(&policy, &john("s3:PutObject", other)),
            ImplicitDeny
        );

        let list = |prefix: &str| {
            john("s3:ListBucket", "arn:aws:s3:::bucket-name").with("s3:prefix", prefix)
        };
        assert_eq!(identity_only(&policy, &list("")), Allow);
        assert_eq!(identity_only(&policy, &list("home/")), Allow);
        assert_eq!(
            identity_only(&policy, &list("home/AROAXXT2NJT7D3SIQN7Z6:John/")),
            Allow
        );
        assert_eq!(
            identity_only(&policy, &list("home/AROAXXT2NJT7D3SIQN7Z6:Mary/")),
            ImplicitDeny
        );
        assert_eq!(identity_only(&policy, &list("other/")), ImplicitDeny);
    }

    // "IAM policy elements: Variables and tags" (Policy variables with no value): a
    // variable with no value in `Resource` matches no resource. "Amazon S3: Allows IAM
    // users access to their S3 home directory": the `aws:username` version "will not work
    // when using IAM roles", whose requests carry no aws:username.
    #[test]
    fn unresolved_variable_in_resource_matches_nothing() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": [
                    "arn:aws:s3:::bucket-name/home/${aws:username}",
                    "arn:aws:s3:::bucket-name/home/${aws:username}/*"
                ]
            }]
        });
        let object = "arn:aws:s3:::bucket-name/home/David/a.txt";
        let david = user_request("s3:GetObject", object).with("aws:username", "David");
        assert_eq!(identity_only(&policy, &david), Allow);
        let role = Request::new(
            "arn:aws:sts::123456789012:assumed-role/R/s",
            "s3:GetObject",
            object,
        )
        .with("aws:userid", "AROAEXAMPLEID:s");
        assert_eq!(identity_only(&policy, &role), ImplicitDeny);
        // Nor does the empty substitution match the folder itself.
        let folder_only = Request::new(
            "arn:aws:sts::123456789012:assumed-role/R/s",
            "s3:GetObject",
            "arn:aws:s3:::bucket-name/home//x",
        );
        assert_eq!(identity_only(&policy, &folder_only), ImplicitDeny);

        // With NotResource, the unresolved entry excludes nothing.
        let deny = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Deny", "Action": "s3:*", "NotResource": "arn:aws:s3:::bucket-name/home/${aws:username}/*"}
        });
        assert_eq!(with_allow_everything(&deny, &david), Allow);
        assert_eq!(with_allow_everything(&deny, &role), ExplicitDeny);
    }

    // "IAM policy elements: Variables and tags" (Specifying default values): team members
    // reach their team's bucket; users without a team tag reach the company-wide one.
    #[test]
    fn default_value_stands_in_for_a_missing_key() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::DOC-EXAMPLE-BUCKET-${aws:PrincipalTag/team, 'company-wide'}"
            }
        });
        let list = |bucket: &str| user_request("s3:ListBucket", &format!("arn:aws:s3:::{bucket}"));
        let yellow = |bucket: &str| list(bucket).with("aws:PrincipalTag/team", "yellow");
        assert_eq!(
            identity_only(&policy, &yellow("DOC-EXAMPLE-BUCKET-yellow")),
            Allow
        );
        assert_eq!(
            identity_only(&policy, &yellow("DOC-EXAMPLE-BUCKET-blue")),
            ImplicitDeny
        );
        assert_eq!(
            identity_only(&policy, &yellow("DOC-EXAMPLE-BUCKET-company-wide")),
            ImplicitDeny
        );
        assert_eq!(
            identity_only(&policy, &list("DOC-EXAMPLE-BUCKET-company-wide")),
            Allow
        );
        assert_eq!(
            identity_only(&policy, &list("DOC-EXAMPLE-BUCKET-yellow")),
            ImplicitDeny
        );
    }

    // "IAM policy elements: Variables and tags": "Key names are case-insensitive. For
    // example, aws:CurrentTime is equivalent to AWS:currenttime." Also "You can't use a
    // multivalued condition key as a variable."
    #[test]
    fn variable_keys_are_case_insensitive_and_single_valued() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "iam:*AccessKey*", "Resource": "arn:aws:iam::123456789012:user/${AWS:UserName}"}
        });
        let own = "arn:aws:iam::123456789012:user/David";
        let request = user_request("iam:CreateAccessKey", own);
        assert_eq!(
            identity_only(&policy, &request.clone().with("aws:username", "David")),
            Allow
        );
        assert_eq!(
            identity_only(&policy, &request.clone().with("AWS:USERNAME", "David")),
            Allow
        );
        let two = request.with_values("aws:username", ["David", "Adele"]);
        assert_eq!(identity_only(&policy, &two), ImplicitDeny);
    }

    // "IAM policy elements: Variables and tags" (Special characters): `${*}`, `${?}` and
    // `${$}` are the characters themselves, not wildcards.
    #[test]
    fn special_character_variables_are_literal() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/a${*}b${?}${$}"}
        });
        let ask = |key: &str| {
            identity_only(
                &policy,
                &user_request("s3:GetObject", &format!("arn:aws:s3:::b/{key}")),
            )
        };
        assert_eq!(ask("a*b?$"), Allow);
        assert_eq!(ask("axb?$"), ImplicitDeny);
        assert_eq!(ask("a*bx$"), ImplicitDeny);
    }

    // "IAM policy elements: Variables and tags": without Version 2012-10-17 "variables like
    // ${aws:username} are treated as literal strings in the policy".
    #[test]
    fn variables_need_version_2012_10_17() {
        let statement = json!({"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::mybucket/${aws:username}/*"});
        let own = user_request("s3:GetObject", "arn:aws:s3:::mybucket/David/a")
            .with("aws:username", "David");
        let literal = user_request("s3:GetObject", "arn:aws:s3:::mybucket/${aws:username}/a")
            .with("aws:username", "David");
        let current = json!({"Version": "2012-10-17", "Statement": statement.clone()});
        let old = json!({"Version": "2008-10-17", "Statement": statement.clone()});
        let unversioned = json!({"Statement": statement});
        assert_eq!(identity_only(&current, &own), Allow);
        assert_eq!(identity_only(&current, &literal), ImplicitDeny);
        for policy in [old, unversioned] {
            assert_eq!(identity_only(&policy, &own), ImplicitDeny);
            assert_eq!(identity_only(&policy, &literal), Allow);
        }
    }

    // "IAM policy elements: Variables and tags" (Policy variables with no value): "Access
    // is specifically denied when aws:principaltag/Team is not set", because an inverted
    // operator matches against the effectively null value.
    #[test]
    fn negated_operator_matches_a_variable_with_no_value() {
        let deny = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Deny",
                "Action": "s3:GetObject",
                "Resource": "arn:aws:s3:::example-bucket/*",
                "Condition": {"StringNotEquals": {"s3:ExistingObjectTag/Team": "${aws:PrincipalTag/Team}"}}
            }]
        });
        let get = user_request("s3:GetObject", "arn:aws:s3:::example-bucket/doc")
            .with("s3:ExistingObjectTag/Team", "red");
        assert_eq!(
            with_allow_everything(&deny, &get.clone().with("aws:PrincipalTag/Team", "red")),
            Allow
        );
        assert_eq!(
            with_allow_everything(&deny, &get.clone().with("aws:PrincipalTag/Team", "blue")),
            ExplicitDeny
        );
        assert_eq!(with_allow_everything(&deny, &get), ExplicitDeny);
    }
}

/// Condition operators and how they combine.
mod policy_conditions {
    use super::*;

    // "IAM JSON policy elements: Condition operators" (Boolean condition operators):
    // BooleanExample denies the bucket and its contents unless over TLS; with no
    // aws:SecureTransport in the context, Bool does not match.
    #[test]
    fn secure_transport_false_is_denied() {
        let deny = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "BooleanExample",
                "Action": "s3:*",
                "Effect": "Deny",
                "Resource": ["arn:aws:s3:::DOC-EXAMPLE-BUCKET", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}
            }]
        });
        let get = user_request("s3:GetObject", "arn:aws:s3:::DOC-EXAMPLE-BUCKET/k");
        assert_eq!(
            with_allow_everything(&deny, &get.clone().with("aws:SecureTransport", "false")),
            ExplicitDeny
        );
        assert_eq!(
            with_allow_everything(&deny, &get.clone().with("aws:SecureTransport", "true")),
            Allow
        );
        assert_eq!(with_allow_everything(&deny, &get), Allow);
        // JSON booleans are accepted as condition values too.
        let json_bool = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Deny", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": false}}}
        });
        let plain =
            user_request("s3:GetObject", "arn:aws:s3:::b/k").with("aws:SecureTransport", "false");
        assert_eq!(with_allow_everything(&json_bool, &plain), ExplicitDeny);
    }

    // "IAM JSON policy elements: Condition operators" (the Important note): an absent key
    // makes StringNotLike true; "If you are using an "Effect": "Deny" element with a
    // negated condition operator like StringNotEqualsIfExists, the request is still
    // denied even if the condition key is not present."
    #[test]
    fn absent_key_with_negated_operators() {
        let deny = |operator: &str| {
            json!({
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Deny",
                    "Action": "s3:*",
                    "Resource": "*",
                    "Condition": {operator: {"aws:PrincipalTag/team": "blue"}}
                }
            })
        };
        let get = user_request("s3:GetObject", "arn:aws:s3:::b/k");
        let blue = get.clone().with("aws:PrincipalTag/team", "blue");
        for operator in [
            "StringNotEquals",
            "StringNotLike",
            "StringNotEqualsIgnoreCase",
            "StringNotEqualsIfExists",
        ] {
            assert_eq!(
                with_allow_everything(&deny(operator), &get),
                ExplicitDeny,
                "{operator}"
            );
            assert_eq!(
                with_allow_everything(&deny(operator), &blue),
                Allow,
                "{operator}"
            );
        }
        // And the plain operators do not match an absent key.
        for operator in ["StringEquals", "StringLike", "StringEqualsIgnoreCase"] {
            assert_eq!(
                with_allow_everything(&deny(operator), &get),
                Allow,
                "{operator}"
            );
            assert_eq!(
                with_allow_everything(&deny(operator), &blue),
                ExplicitDeny,
                "{operator}"
            );
        }
    }

    // "IAM JSON policy elements: Condition operators" (...IfExists condition operators):
    // THISPOLICYDOESNOTWORK fails for resources without ec2:InstanceType;
    // StringLikeIfExists passes them and still checks the key where it exists.
    #[test]
    fn if_exists_passes_an_absent_key() {
        let with_operator = |operator: &str| {
            json!({
                "Version": "2012-10-17",
                "Statement": {
                    "Sid": "RunInstance",
                    "Effect": "Allow",
                    "Action": "ec2:RunInstances",
                    "Resource": "*",
                    "Condition": {operator: {"ec2:InstanceType": ["t1.*", "t2.*", "m3.*"]}}
                }
            })
        };
        let run = |image_or_instance: &str| user_request("ec2:RunInstances", image_or_instance);
        let instance = run("arn:aws:ec2:us-east-1:123456789012:instance/*");
        let image = run("arn:aws:ec2:us-east-1::image/ami-12345678");
        let if_exists = with_operator("StringLikeIfExists");
        assert_eq!(
            identity_only(
                &if_exists,
                &instance.clone().with("ec2:InstanceType", "t1.micro")
            ),
            Allow
        );
        assert_eq!(
            identity_only(
                &if_exists,
                &instance.clone().with("ec2:InstanceType", "m2.micro")
            ),
            ImplicitDeny
        );
        assert_eq!(identity_only(&if_exists, &image), Allow);
        let does_not_work = with_operator("StringLike");
        assert_eq!(
            identity_only(
                &does_not_work,
                &instance.with("ec2:InstanceType", "t2.small")
            ),
            Allow
        );
        assert_eq!(identity_only(&does_not_work, &image), ImplicitDeny);
    }

    // "IAM JSON policy elements: Condition operators" (String condition operators): the
    // aws:PrincipalTag/job-category table: match, other value, absent key.
    #[test]
    fn string_equals_table() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Action": "iam:*AccessKey*",
                "Resource": "arn:aws:iam::111122223333:user/*",
                "Condition": {"StringEquals": {"aws:PrincipalTag/job-category": "iamuser-admin"}}
            }
        });
        let request = user_request("iam:CreateAccessKey", "arn:aws:iam::111122223333:user/bob");
        let tagged = |value: &str| request.clone().with("aws:PrincipalTag/job-category", value);
        assert_eq!(identity_only(&policy, &tagged("iamuser-admin")), Allow);
        assert_eq!(identity_only(&policy, &tagged("dev-ops")), ImplicitDeny);
        assert_eq!(
            identity_only(&policy, &tagged("IAMUSER-ADMIN")),
            ImplicitDeny
        );
        assert_eq!(identity_only(&policy, &request), ImplicitDeny);
    }

    // "IAM JSON policy elements: Condition operators" (Amazon Resource Name (ARN)
    // condition operators): StringLike's first `*` swallows colons; ArnLike's stays in the
    // region segment, so only StringLike matches this value.
    #[test]
    fn arn_like_matches_segment_by_segment() {
        let with_operator = |operator: &str| {
            json!({
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Allow",
                    "Action": "someservice:*",
                    "Resource": "*",
                    "Condition": {operator: {"aws:SourceArn": "arn:aws:someservice:*:111122223333:finance/*"}}
                }
            })
        };
        let request = user_request("someservice:Read", "*").with(
            "aws:SourceArn",
            "arn:aws:someservice:us-east-2:999999999999:store/abc:111122223333:finance/document.txt",
        );
        assert_eq!(identity_only(&with_operator("StringLike"), &request), Allow);
        assert_eq!(
            identity_only(&with_operator("ArnLike"), &request),
            ImplicitDeny
        );
        assert_eq!(identity_only(&with_operator("ArnNotLike"), &request), Allow);
        let own = request.with(
            "aws:SourceArn",
            "arn:aws:someservice:us-east-2:111122223333:finance/report.txt",
        );
        assert_eq!(identity_only(&with_operator("ArnLike"), &own), Allow);
    }

    // "IAM JSON policy elements: Condition operators" (ARN condition operators): the SQS
    // queue policy lets SNS send only on behalf of one topic.
    #[test]
    fn arn_equals_in_a_queue_policy_for_a_service_principal() {
        let queue = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Principal": {"Service": "sns.amazonaws.com"},
                "Action": "SQS:SendMessage",
                "Resource": "arn:aws:sqs:us-east-1:123456789012:QUEUE-ID",
                "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:123456789012:TOPIC-ID"}}
            }
        });
        let send = |source: Option<&str>| {
            let request = Request::new(
                "sns.amazonaws.com",
                "sqs:SendMessage",
                "arn:aws:sqs:us-east-1:123456789012:QUEUE-ID",
            );
            match source {
                Some(arn) => request.with("aws:SourceArn", arn),
                None => request,
            }
        };
        let ask = |request: &Request| decide(&[], Some(&queue), request);
        assert_eq!(
            ask(&send(Some("arn:aws:sns:us-east-1:123456789012:TOPIC-ID"))),
            Allow
        );
        assert_eq!(
            ask(&send(Some("arn:aws:sns:us-east-1:777788889999:TOPIC-ID"))),
            ImplicitDeny
        );
        assert_eq!(ask(&send(None)), ImplicitDeny);
        let not_sns = Request::new(
            USER,
            "sqs:SendMessage",
            "arn:aws:sqs:us-east-1:123456789012:QUEUE-ID",
        )
        .with(
            "aws:SourceArn",
            "arn:aws:sns:us-east-1:123456789012:TOPIC-ID",
        );
        assert_eq!(ask(&not_sns), ImplicitDeny);
    }

    // "IAM JSON policy elements: Condition operators" (ARN condition operators): "Each of
    // the six colon-delimited components of the ARN is checked separately", so a pattern
    // or a value lacking a component is no ARN match.
    #[test]
    fn arn_operators_compare_all_six_components() {
        let policy = |pattern: &str| {
            json!({
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Allow",
                    "Action": "sqs:SendMessage",
                    "Resource": "*",
                    "Condition": {"ArnEquals": {"aws:SourceArn": pattern}}
                }
            })
        };
        let topic = "arn:aws:sns:us-east-1:123456789012:TOPIC-ID";
        let truncated = "arn:aws:sns:us-east-1:123456789012";
        let from = |arn: &str| user_request("sqs:SendMessage", "*").with("aws:SourceArn", arn);
        assert_eq!(identity_only(&policy(topic), &from(topic)), Allow);
        assert_eq!(
            identity_only(&policy(truncated), &from(topic)),
            ImplicitDeny
        );
        assert_eq!(
            identity_only(&policy(topic), &from(truncated)),
            ImplicitDeny
        );
        // A lone `*` is taken as any ARN; the guide does not say.
        assert_eq!(identity_only(&policy("*"), &from(topic)), Allow);
    }

    // "IAM JSON policy elements: Condition operators" (Numeric condition operators): list
    // up to 10 objects at a time; an absent key does not match.
    #[test]
    fn numeric_less_than_equals() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": "arn:aws:s3:::example_bucket",
                "Condition": {"NumericLessThanEquals": {"s3:max-keys": "10"}}
            }
        });
        let list = user_request("s3:ListBucket", "arn:aws:s3:::example_bucket");
        assert_eq!(
            identity_only(&policy, &list.clone().with("s3:max-keys", "10")),
            Allow
        );
        assert_eq!(
            identity_only(&policy, &list.clone().with("s3:max-keys", "2.5")),
            Allow
        );
        assert_eq!(
            identity_only(&policy, &list.clone().with("s3:max-keys", "11")),
            ImplicitDeny
        );
        assert_eq!(
            identity_only(&policy, &list.clone().with("s3:max-keys", "ten")),
            ImplicitDeny
        );
        assert_eq!(identity_only(&policy, &list), ImplicitDeny);
    }

    #[test]
    fn numeric_operators_compare_request_to_policy() {
        let holds = |operator: &str, request_value: &str| {
            let policy = json!({
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {operator: {"k": 5}}}
            });
            identity_only(
                &policy,
                &user_request("s3:ListBucket", "*").with("k", request_value),
            ) == Allow
        };
        assert!(holds("NumericEquals", "5.0"));
        assert!(!holds("NumericEquals", "6"));
        assert!(holds("NumericNotEquals", "6"));
        assert!(!holds("NumericNotEquals", "5"));
        assert!(holds("NumericLessThan", "4"));
        assert!(!holds("NumericLessThan", "5"));
        assert!(holds("NumericGreaterThan", "6"));
        assert!(!holds("NumericGreaterThan", "5"));
        assert!(holds("NumericGreaterThanEquals", "5"));
        assert!(!holds("NumericGreaterThanEquals", "4"));
    }

    // "IAM JSON policy elements: Condition operators" (IP address condition operators):
    // 203.0.113.0/24, mixed with an IPv6 range; a bare address means /32.
    #[test]
    fn ip_address_ranges() {
        let policy = |operator: &str| {
            json!({
                "Version": "2012-10-17",
                "Statement": {
                    "Effect": "Allow",
                    "Action": "someservice:*",
                    "Resource": "*",
                    "Condition": {operator: {"aws:SourceIp": ["203.0.113.0/24", "2001:DB8:1234:5678::/64", "198.51.100.7"]}}
                }
            })
        };
        let from = |ip: &str| user_request("someservice:Do", "*").with("aws:SourceIp", ip);
        let allowed =
            |operator: &str, ip: &str| identity_only(&policy(operator), &from(ip)) == Allow;
        assert!(allowed("IpAddress", "203.0.113.1"));
        assert!(allowed("IpAddress", "2001:db8:1234:5678::9"));
        assert!(allowed("IpAddress", "198.51.100.7"));
        assert!(!allowed("IpAddress", "198.51.100.1"));
        assert!(!allowed("IpAddress", "2001:db8:1234:5679::9"));
        assert!(allowed("NotIpAddress", "198.51.100.1"));
        assert!(!allowed("NotIpAddress", "203.0.113.200"));
        // Without aws:SourceIp (a VPC endpoint), IpAddress does not match.
        let no_ip = user_request("someservice:Do", "*");
        assert_eq!(identity_only(&policy("IpAddress"), &no_ip), ImplicitDeny);
    }

    // "IAM JSON policy elements: Condition operators" (Condition operator to check
    // existence of condition keys): Null true wants the key absent, false present.
    #[test]
    fn null_checks_presence() {
        let policy = |value: &str| {
            json!({
                "Version": "2012-10-17",
                "Statement": {"Action": "ec2:*", "Effect": "Allow", "Resource": "*", "Condition": {"Null": {"aws:TokenIssueTime": value}}}
            })
        };
        let long_term = user_request("ec2:DescribeInstances", "*");
        let temporary = long_term
            .clone()
            .with("aws:TokenIssueTime", "2020-01-01T00:00:01Z");
        assert_eq!(identity_only(&policy("true"), &long_term), Allow);
        assert_eq!(identity_only(&policy("true"), &temporary), ImplicitDeny);
        assert_eq!(identity_only(&policy("false"), &long_term), ImplicitDeny);
        assert_eq!(identity_only(&policy("false"), &temporary), Allow);
    }

    // "Creating a condition with multiple keys or values": operators and keys are ANDed,
    // a key's values ORed; a negated operator's values work like an AND (none may match).
    #[test]
    fn and_across_operators_and_keys_or_across_values() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {
                    "StringEqualsIgnoreCase": {
                        "aws:PrincipalTag/department": ["finance", "hr", "legal"],
                        "aws:PrincipalTag/role": ["audit", "security"]
                    },
                    "StringEquals": {"aws:PrincipalAccount": "123456789012"}
                }
            }
        });
        let base = user_request("s3:GetObject", "arn:aws:s3:::b/k")
            .with("aws:PrincipalTag/department", "HR")
            .with("aws:PrincipalTag/role", "audit")
            .with("aws:PrincipalAccount", ACCOUNT);
        assert_eq!(identity_only(&policy, &base), Allow);
        assert_eq!(
            identity_only(&policy, &base.clone().with("aws:PrincipalTag/role", "dev")),
            ImplicitDeny
        );
        assert_eq!(
            identity_only(
                &policy,
                &base.clone().with("aws:PrincipalAccount", "999999999999")
            ),
            ImplicitDeny
        );
        let mut no_role = base;
        no_role.context.remove("aws:PrincipalTag/role");
        assert_eq!(identity_only(&policy, &no_role), ImplicitDeny);

        let not_equals = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Action": "s3:*",
                "Resource": "*",
                "Condition": {"StringNotEquals": {"aws:PrincipalAccount": ["111111111111", "222222222222"]}}
            }
        });
        let from =
            |account: &str| user_request("s3:GetObject", "*").with("aws:PrincipalAccount", account);
        assert_eq!(identity_only(&not_equals, &from("333333333333")), Allow);
        assert_eq!(
            identity_only(&not_equals, &from("111111111111")),
            ImplicitDeny
        );
        assert_eq!(
            identity_only(&not_equals, &from("222222222222")),
            ImplicitDeny
        );
    }
}

/// The ForAllValues and ForAnyValue set operators.
mod policy_set_operators {
    use super::*;

    // "Creating a condition with multiple keys or values" (ForAllValues): only ID, Message
    // and Tags may be requested; "it returns true if there are no keys in the request".
    #[test]
    fn for_all_values_with_absent_or_empty_key() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Action": "dynamodb:GetItem",
                "Resource": "arn:aws:dynamodb:*:*:table/Thread",
                "Condition": {"ForAllValues:StringEquals": {"dynamodb:Attributes": ["ID", "Message", "Tags"]}}
            }]
        });
        let get = user_request(
            "dynamodb:GetItem",
            "arn:aws:dynamodb:us-east-1:123456789012:table/Thread",
        );
        let attributes = |names: &[&str]| {
            get.clone()
                .with_values("dynamodb:Attributes", names.iter().copied())
        };
        assert_eq!(
            identity_only(&policy, &attributes(&["ID", "Message", "Tags"])),
            Allow
        );
        assert_eq!(identity_only(&policy, &attributes(&["Message"])), Allow);
        assert_eq!(
            identity_only(&policy, &attributes(&["ID", "UserName"])),
            ImplicitDeny
        );
        assert_eq!(identity_only(&policy, &get), Allow);
        assert_eq!(identity_only(&policy, &attributes(&[])), Allow);
        assert_eq!(identity_only(&policy, &attributes(&[""])), Allow);
    }

    // "Creating a condition with multiple keys or values" (ForAnyValue): PutItem touching
    // ID or PostDateTime is denied; one touching neither is not.
    #[test]
    fn for_any_value_in_a_deny() {
        let deny = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Deny",
                "Action": "dynamodb:PutItem",
                "Resource": "arn:aws:dynamodb:*:*:table/Thread",
                "Condition": {"ForAnyValue:StringEquals": {"dynamodb:Attributes": ["ID", "PostDateTime"]}}
            }
        });
        let put = user_request(
            "dynamodb:PutItem",
            "arn:aws:dynamodb:us-east-1:123456789012:table/Thread",
        );
        let attributes = |names: &[&str]| {
            put.clone()
                .with_values("dynamodb:Attributes", names.iter().copied())
        };
        assert_eq!(
            with_allow_everything(&deny, &attributes(&["PostDateTime", "Message"])),
            ExplicitDeny
        );
        assert_eq!(
            with_allow_everything(&deny, &attributes(&["UserName"])),
            Allow
        );
        // "For no matching key or a null dataset, the condition returns false."
        assert_eq!(with_allow_everything(&deny, &put), Allow);
        assert_eq!(with_allow_everything(&deny, &attributes(&[""])), Allow);
    }

    // "IAM JSON policy elements: Condition operators" (Example using ForAnyValue with a
    // string condition operator): the CreateTags table, row by row.
    #[test]
    fn for_any_value_tag_keys_table() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": "arn:aws:ec2:*:*:instance/*",
                "Condition": {
                    "StringEqualsIgnoreCase": {"aws:RequestTag/environment": ["preprod", "storage"]},
                    "ForAnyValue:StringEquals": {"aws:TagKeys": "environment"}
                }
            }
        });
        let tag = user_request(
            "ec2:CreateTags",
            "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0",
        );
        let row = |keys: Option<&[&str]>, environment: Option<(&str, &str)>| {
            let mut request = tag.clone();
            if let Some(keys) = keys {
                request = request.with_values("aws:TagKeys", keys.iter().copied());
            }
            if let Some((key, value)) = environment {
                request = request.with(key, value);
            }
            identity_only(&policy, &request)
        };
        let env = "aws:RequestTag/environment";
        assert_eq!(row(Some(&["environment"]), Some((env, "preprod"))), Allow);
        assert_eq!(
            row(Some(&["environment", "costcenter"]), Some((env, "PreProd"))),
            Allow
        );
        assert_eq!(
            row(
                Some(&["Environment"]),
                Some(("aws:RequestTag/Environment", "preprod"))
            ),
            ImplicitDeny
        );
        assert_eq!(
            row(Some(&["costcenter"]), Some((env, "preprod"))),
            ImplicitDeny
        );
        assert_eq!(row(None, Some((env, "storage"))), ImplicitDeny);
        assert_eq!(row(Some(&["environment"]), None), ImplicitDeny);
        assert_eq!(row(None, None), ImplicitDeny);
    }

    // "IAM JSON policy elements: Condition operators" (Wildcard matching): the
    // DenyS3AccessOutsideMyBoundary statement. ForAllValues:StringNotLike is true when no
    // value is inside the listed OUs, and, by the ForAllValues rule, when the key is
    // absent: the deny then applies.
    #[test]
    fn for_all_values_string_not_like_boundary() {
        let deny = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "DenyS3AccessOutsideMyBoundary",
                "Effect": "Deny",
                "Action": ["s3:*"],
                "Resource": "*",
                "Condition": {
                    "ForAllValues:StringNotLike": {
                        "aws:ResourceOrgPaths": ["o-acorg/r-acroot/ou-acroot-mediaou/", "o-acorg/r-acroot/ou-acroot-sportsou/*"]
                    }
                }
            }]
        });
        let get = user_request("s3:GetObject", "arn:aws:s3:::b/k");
        let inside = get.clone().with(
            "aws:ResourceOrgPaths",
            "o-acorg/r-acroot/ou-acroot-sportsou/costcenter/",
        );
        let outside = get.clone().with(
            "aws:ResourceOrgPaths",
            "o-acorg/r-acroot/ou-acroot-mediaou/costcenter/",
        );
        assert_eq!(with_allow_everything(&deny, &inside), Allow);
        assert_eq!(with_allow_everything(&deny, &outside), ExplicitDeny);
        assert_eq!(with_allow_everything(&deny, &get), ExplicitDeny);
    }

    // "IAM JSON policy elements: Condition operators" (Example using ForAllValues with an
    // ARN condition operator): the PutDeliverySource table, including its last row: no
    // logs:LogGeneratingResourceArns in the request is a match.
    #[test]
    fn for_all_values_arn_like_table() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Effect": "Allow",
                "Principal": "*",
                "Action": "logs:PutDeliverySource",
                "Resource": "arn:aws:logs:us-east-1:123456789012:delivery-source:*",
                "Condition": {
                    "ForAllValues:ArnLike": {
                        "logs:LogGeneratingResourceArns": [
                            "arn:aws:cloudfront::123456789012:distribution/*",
                            "arn:aws:cloudfront::123456789012:distribution/support*"
                        ]
                    }
                }
            }]
        });
        let put = user_request(
            "logs:PutDeliverySource",
            "arn:aws:logs:us-east-1:123456789012:delivery-source:cf",
        );
        let arns = |arns: &[&str]| {
            put.clone()
                .with_values("logs:LogGeneratingResourceArns", arns.iter().copied())
        };
        let ask = |request: &Request| decide(&[], Some(&policy), request);
        let costcenter = "arn:aws:cloudfront::123456789012:distribution/costcenter";
        assert_eq!(ask(&arns(&[costcenter])), Allow);
        assert_eq!(
            ask(&arns(&[
                costcenter,
                "arn:aws:cloudfront::123456789012:distribution/support2025"
            ])),
            Allow
        );
        assert_eq!(
            ask(&arns(&[
                costcenter,
                "arn:aws:cloudfront::777788889999:distribution/admin"
            ])),
            ImplicitDeny
        );
        assert_eq!(
            ask(&arns(&[
                "arn:aws:cloudfront::777788889999:distribution/costcenter"
            ])),
            ImplicitDeny
        );
        assert_eq!(ask(&put), Allow);
    }

    // "Set operators for multivalued context keys": with the Null operator set to false
    // next to it, ForAllValues no longer passes a missing key.
    #[test]
    fn null_false_stops_for_all_values_passing_a_missing_key() {
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": {
                "Effect": "Allow",
                "Action": "iam:TagUser",
                "Resource": "*",
                "Condition": {
                    "ForAllValues:StringEquals": {"aws:TagKeys": ["team", "cost"]},
                    "Null": {"aws:TagKeys": "false"}
                }
            }
        });
        let tag = user_request("iam:TagUser", "arn:aws:iam::123456789012:user/bob");
        assert_eq!(
            identity_only(&policy, &tag.clone().with_values("aws:TagKeys", ["team"])),
            Allow
        );
        assert_eq!(
            identity_only(
                &policy,
                &tag.clone().with_values("aws:TagKeys", ["team", "x"])
            ),
            ImplicitDeny
        );
        assert_eq!(identity_only(&policy, &tag), ImplicitDeny);
    }
}

/// Principal and NotPrincipal in resource policies.
mod policy_principals {
    use super::*;

    /// A bucket policy allowing `principal` to read the bucket.
    fn bucket_for(principal: Value) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Principal": principal, "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
        })
    }

    const SESSION: &str = "arn:aws:sts::123456789012:assumed-role/lab-role/i-0123456789abcdef0";

    fn session_get() -> Request {
        Request::new(SESSION, "s3:GetObject", "arn:aws:s3:::b/k")
    }

    // "AWS JSON policy elements: Principal" (IAM role principals, AWS account principals,
    // All principals): a role's ARN covers its sessions, an account (by id or root ARN)
    // all of its principals, and "*" or {"AWS": "*"} everyone.
    #[test]
    fn principal_forms_that_name_the_caller() {
        for principal in [
            json!({"AWS": "arn:aws:iam::123456789012:role/lab-role"}),
            json!({"AWS": "arn:aws:iam::123456789012:role/labctl/lab/us-east-1/lab-role"}),
            json!({"AWS": SESSION}),
            json!({"AWS": ACCOUNT}),
            json!({"AWS": ["555555555555", "arn:aws:iam::123456789012:root"]}),
            json!({"AWS": "*"}),
            json!("*"),
        ] {
            assert_eq!(
                decide(&[], Some(&bucket_for(principal.clone())), &session_get()),
                Allow,
                "{principal}"
            );
        }
    }

    // "AWS JSON policy elements: Principal": a role of another account, another role, or
    // another account does not grant; the identity policy must then allow on its own.
    #[test]
    fn principal_of_another_account_does_not_grant() {
        for principal in [
            json!({"AWS": "arn:aws:iam::444455556666:role/lab-role"}),
            json!({"AWS": "arn:aws:iam::123456789012:role/other-role"}),
            json!({"AWS": "444455556666"}),
            json!({"AWS": "arn:aws:sts::123456789012:assumed-role/lab-role/i-0fedcba9876543210"}),
            json!({"Service": "ec2.amazonaws.com"}),
        ] {
            assert_eq!(
                decide(&[], Some(&bucket_for(principal.clone())), &session_get()),
                ImplicitDeny,
                "{principal}"
            );
        }
        let identity = json!({
            "Version": "2012-10-17",
            "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::b/*"}
        });
        let foreign = bucket_for(json!({"AWS": "arn:aws:iam::444455556666:role/lab-role"}));
        assert_eq!(decide(&[identity], Some(&foreign), &session_get()), Allow);
    }

    // "AWS JSON policy elements: NotPrincipal" (NotPrincipal with Deny): all but Bob are
    // denied when the list names Bob and his account; a list naming only a session still
    // denies it through its role and account.
    #[test]
    fn not_principal_with_deny() {
        let deny_all_but = |names: Value| {
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": ["arn:aws:s3:::BUCKETNAME", "arn:aws:s3:::BUCKETNAME/*"]},
                    {"Effect": "Deny", "NotPrincipal": {"AWS": names}, "Action": "s3:*", "Resource": ["arn:aws:s3:::BUCKETNAME", "arn:aws:s3:::BUCKETNAME/*"]}
                ]
            })
        };
        let bob_and_account = deny_all_but(json!([
            "arn:aws:iam::444455556666:user/Bob",
            "arn:aws:iam::444455556666:root"
        ]));
        let get =
            |principal: &str| Request::new(principal, "s3:GetObject", "arn:aws:s3:::BUCKETNAME/k");
        let ask = |policy: &Value, principal: &str| decide(&[], Some(policy), &get(principal));
        assert_eq!(
            ask(&bob_and_account, "arn:aws:iam::444455556666:user/Bob"),
            Allow
        );
        assert_eq!(
            ask(&bob_and_account, "arn:aws:iam::444455556666:user/Alice"),
            ExplicitDeny
        );

        let session = "arn:aws:sts::444455556666:assumed-role/cross-account-read-only-role/cross-account-audit-app";
        let full_chain = deny_all_but(json!([
            session,
            "arn:aws:iam::444455556666:role/cross-account-read-only-role",
            "arn:aws:iam::444455556666:root"
        ]));
        assert_eq!(ask(&full_chain, session), Allow);
        let session_only = deny_all_but(json!([session]));
        assert_eq!(ask(&session_only, session), ExplicitDeny);
    }

    // "AWS JSON policy elements: Principal" (All principals):
    // UsePrincipalArnInsteadOfNotPrincipalWithDeny denies everyone but one user.
    #[test]
    fn principal_arn_condition_instead_of_not_principal() {
        let bucket = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "UsePrincipalArnInsteadOfNotPrincipalWithDeny",
                "Effect": "Deny",
                "Action": "s3:*",
                "Principal": "*",
                "Resource": ["arn:aws:s3:::BUCKETNAME/*", "arn:aws:s3:::BUCKETNAME"],
                "Condition": {"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::444455556666:user/user-name"}}
            }]
        });
        let get = |principal: &str| {
            Request::new(principal, "s3:GetObject", "arn:aws:s3:::BUCKETNAME/k")
                .with("aws:PrincipalArn", principal)
        };
        let allow = [allow_everything()];
        assert_eq!(
            decide(
                &allow,
                Some(&bucket),
                &get("arn:aws:iam::444455556666:user/user-name")
            ),
            Allow
        );
        assert_eq!(
            decide(
                &allow,
                Some(&bucket),
                &get("arn:aws:iam::444455556666:user/other")
            ),
            ExplicitDeny
        );
    }
}

/// labctl's own documents: instance folders and the TLS-only bucket.
mod policy_labctl {
    use super::*;

    /// The instances' inline policy: each writes under its own `${aws:userid}` folder.
    fn instance_policy(bucket: &str) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "ReadLabnet", "Effect": "Allow", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{bucket}/artifacts/labnet/*")},
                {
                    "Sid": "WriteReportsAndCaptures",
                    "Effect": "Allow",
                    "Action": "s3:PutObject",
                    "Resource": [
                        format!("arn:aws:s3:::{bucket}/reports/${{aws:userid}}.json"),
                        format!("arn:aws:s3:::{bucket}/captures/${{aws:userid}}/*")
                    ]
                }
            ]
        })
    }

    /// The bucket's policy: nothing without TLS.
    fn tls_only(bucket: &str) -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}}
            }]
        })
    }

    fn instance_put(instance: &str, key: &str, tls: bool) -> Request {
        Request::new(
            format!("arn:aws:sts::123456789012:assumed-role/lab-role/{instance}"),
            "s3:PutObject",
            format!("arn:aws:s3:::lab-bucket/{key}"),
        )
        .with("aws:userid", format!("AROAEXAMPLEID:{instance}"))
        .with("aws:SecureTransport", tls.to_string())
    }

    // "IAM policy elements: Variables and tags" (Principal key values): for an EC2
    // instance role, aws:userid is role-id:ec2-instance-id; so instance A may write its own
    // folder and report but not B's.
    #[test]
    fn instances_write_only_their_own_keys() {
        let identity = [instance_policy("lab-bucket")];
        let bucket = tls_only("lab-bucket");
        let a = "i-0123456789abcdef0";
        let b = "i-0fedcba9876543210";
        let ask = |request: &Request| decide(&identity, Some(&bucket), request);
        assert_eq!(
            ask(&instance_put(
                a,
                &format!("captures/AROAEXAMPLEID:{a}/eth0.pcap"),
                true
            )),
            Allow
        );
        assert_eq!(
            ask(&instance_put(
                a,
                &format!("reports/AROAEXAMPLEID:{a}.json"),
                true
            )),
            Allow
        );
        assert_eq!(
            ask(&instance_put(
                a,
                &format!("captures/AROAEXAMPLEID:{b}/eth0.pcap"),
                true
            )),
            ImplicitDeny
        );
        assert_eq!(
            ask(&instance_put(
                a,
                &format!("reports/AROAEXAMPLEID:{b}.json"),
                true
            )),
            ImplicitDeny
        );
        assert_eq!(
            ask(&instance_put(a, "instances/i-0123456789abcdef0.json", true)),
            ImplicitDeny
        );
        // Its own key, but without TLS.
        assert_eq!(
            ask(&instance_put(
                a,
                &format!("captures/AROAEXAMPLEID:{a}/eth0.pcap"),
                false
            )),
            ExplicitDeny
        );
        // No aws:userid: nothing under the per-writer prefixes.
        let mut anonymous = instance_put(a, &format!("captures/AROAEXAMPLEID:{a}/eth0.pcap"), true);
        anonymous.context.remove("aws:userid");
        assert_eq!(ask(&anonymous), ImplicitDeny);
    }
}

/// Malformed documents are errors, not panics.
mod policy_errors {
    use super::*;

    fn error_of(identity: &[Value], resource: Option<&Value>) -> PolicyError {
        let request = user_request("s3:GetObject", "arn:aws:s3:::b/k");
        match evaluate(identity, resource, &request) {
            Err(error) => error,
            Ok(decision) => panic!("expected an error, got {decision:?}"),
        }
    }

    fn identity_error(statement: Value) -> PolicyError {
        error_of(
            &[
                json!({"Version": "2012-10-17", "Statement": [allow_everything()["Statement"].clone(), statement]}),
            ],
            None,
        )
    }

    #[test]
    fn unknown_effect_names_the_statement() {
        let error = identity_error(
            json!({"Sid": "Oops", "Effect": "allow", "Action": "s3:*", "Resource": "*"}),
        );
        assert!(
            matches!(&error, PolicyError::UnknownEffect { at, effect } if at.statement == Some(1) && effect == "\"allow\"")
        );
        assert_eq!(
            error.to_string(),
            "identity policy 0, statement 1 (Sid \"Oops\"): Effect \"allow\" is neither \"Allow\" nor \"Deny\""
        );
    }

    #[test]
    fn action_and_not_action_together() {
        let error = identity_error(
            json!({"Effect": "Allow", "Action": "s3:*", "NotAction": "iam:*", "Resource": "*"}),
        );
        assert!(matches!(
            error,
            PolicyError::Conflicting {
                first: "Action",
                second: "NotAction",
                ..
            }
        ));
        assert!(
            error
                .to_string()
                .starts_with("identity policy 0, statement 1: has both Action and NotAction")
        );
    }

    #[test]
    fn missing_elements() {
        let no_action = identity_error(json!({"Effect": "Allow", "Resource": "*"}));
        assert!(matches!(
            no_action,
            PolicyError::Missing {
                element: "Action or NotAction",
                ..
            }
        ));
        let no_effect = identity_error(json!({"Action": "s3:*", "Resource": "*"}));
        assert!(matches!(
            no_effect,
            PolicyError::Missing {
                element: "Effect",
                ..
            }
        ));
        let no_resource = identity_error(json!({"Effect": "Allow", "Action": "s3:*"}));
        assert!(matches!(
            no_resource,
            PolicyError::Missing {
                element: "Resource or NotResource",
                ..
            }
        ));
        let no_statement = error_of(&[json!({"Version": "2012-10-17"})], None);
        assert!(matches!(
            no_statement,
            PolicyError::Missing {
                element: "Statement",
                ..
            }
        ));
    }

    #[test]
    fn unknown_and_unsupported_condition_operators() {
        let unknown = identity_error(json!({
            "Sid": "Typo", "Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"StringEqual": {"aws:username": "x"}}
        }));
        assert!(
            matches!(&unknown, PolicyError::UnknownConditionOperator { operator, .. } if operator == "StringEqual")
        );
        assert!(unknown.to_string().contains("statement 1 (Sid \"Typo\")"));
        let date = identity_error(json!({
            "Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"DateGreaterThan": {"aws:TokenIssueTime": "2020-01-01T00:00:01Z"}}
        }));
        assert!(matches!(
            date,
            PolicyError::UnsupportedConditionOperator { .. }
        ));
        // "You can add IfExists to the end of any condition operator name except the Null
        // condition."
        let null_if_exists = identity_error(json!({
            "Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"NullIfExists": {"aws:TokenIssueTime": "true"}}
        }));
        assert!(matches!(null_if_exists, PolicyError::Invalid { .. }));
    }

    #[test]
    fn principal_rules_per_policy_kind() {
        let in_identity = identity_error(
            json!({"Effect": "Allow", "Principal": "*", "Action": "s3:*", "Resource": "*"}),
        );
        assert!(matches!(
            in_identity,
            PolicyError::NotAllowed {
                element: "Principal",
                ..
            }
        ));
        let resource = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}});
        let missing = error_of(&[], Some(&resource));
        assert!(
            matches!(&missing, PolicyError::Missing { at, element: "Principal or NotPrincipal" } if at.source == PolicySource::Resource)
        );
        for bad in [
            json!("arn:aws:iam::123456789012:root"),
            json!({"AWS": "arn:aws:iam::123456789012:role/*"}),
            json!({"Group": "x"}),
            json!(7),
        ] {
            let policy = json!({"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Principal": bad, "Action": "s3:*", "Resource": "*"}});
            assert!(
                matches!(error_of(&[], Some(&policy)), PolicyError::Invalid { .. }),
                "{policy}"
            );
        }
    }

    #[test]
    fn malformed_values() {
        let cases = [
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "bucket/key"}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:${aws:username}::b"}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username"}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "arn:aws:s3:::b/${aws:username, default}"}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": 5}),
            json!({"Effect": "Allow", "Action": "GetObject", "Resource": "*"}),
            json!({"Effect": "Allow", "Action": ["s3:*", 1], "Resource": "*"}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "300.1.1.1/8"}}}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"NumericEquals": {"s3:max-keys": "ten"}}}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"NumericEquals": {"s3:max-keys": "NaN"}}}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "yes"}}}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"Null": {"aws:TokenIssueTime": "maybe"}}}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"StringEquals": {"k": {"nested": 1}}}}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": {"StringEquals": "k"}}),
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "Condition": []}),
            json!({"Sid": 3, "Effect": "Allow", "Action": "s3:*", "Resource": "*"}),
        ];
        for statement in cases {
            let error = identity_error(statement.clone());
            assert!(
                matches!(error, PolicyError::Invalid { .. }),
                "{statement}: {error}"
            );
        }
    }

    #[test]
    fn malformed_documents() {
        assert!(matches!(
            error_of(&[json!([])], None),
            PolicyError::NotAnObject { .. }
        ));
        assert!(matches!(
            identity_error(json!("s3:*")),
            PolicyError::NotAnObject { .. }
        ));
        let version = error_of(&[json!({"Version": "2012-10-18", "Statement": []})], None);
        assert!(matches!(version, PolicyError::UnknownVersion { .. }));
        let element = error_of(&[json!({"Version": "2012-10-17", "Statment": []})], None);
        assert!(
            matches!(&element, PolicyError::UnknownElement { element, .. } if element == "Statment")
        );
        let in_statement =
            identity_error(json!({"Effect": "Allow", "Actions": "s3:*", "Resource": "*"}));
        assert!(
            matches!(&in_statement, PolicyError::UnknownElement { element, .. } if element == "Actions")
        );
        let both_resources = identity_error(
            json!({"Effect": "Allow", "Action": "s3:*", "Resource": "*", "NotResource": "*"}),
        );
        assert!(matches!(
            both_resources,
            PolicyError::Conflicting {
                first: "Resource",
                ..
            }
        ));
    }

    // A later malformed document is an error even when an earlier Deny already decides.
    #[test]
    fn every_document_is_checked() {
        let deny = json!({"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*"}});
        let broken = json!({"Version": "2012-10-17", "Statement": {"Effect": "Maybe", "Action": "*", "Resource": "*"}});
        let error = error_of(&[deny, broken], None);
        assert!(
            matches!(&error, PolicyError::UnknownEffect { at, .. } if at.source == PolicySource::Identity(1))
        );
    }
}

/// The wildcard matcher against a reference, and against hostile patterns.
mod policy_wildcards {
    use super::*;

    /// The plain recursive definition, exponential at worst but obviously right.
    fn reference_match(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|skip| reference_match(rest, &text[skip..])),
            Some(('?', rest)) => !text.is_empty() && reference_match(rest, &text[1..]),
            Some((c, rest)) => text.first() == Some(c) && reference_match(rest, &text[1..]),
        }
    }

    proptest! {
        #[test]
        fn wildcard_match_agrees_with_the_reference(pattern in "[ab*?]{0,10}", text in "[ab]{0,12}") {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(wildcard_match(&pattern, &text), reference_match(&p, &t));
        }

        #[test]
        fn a_trailing_star_is_a_prefix_test(prefix in "[a-c/:]{0,6}", text in "[a-c/:]{0,10}") {
            prop_assert_eq!(wildcard_match(&format!("{prefix}*"), &text), text.starts_with(&prefix));
            prop_assert_eq!(wildcard_match(&prefix, &text), prefix == text);
        }

        // Through the evaluator: an `arn:aws:s3:::bucket/<prefix>*` resource allows exactly
        // the keys starting with the prefix, `/` and `:` included.
        #[test]
        fn resource_prefix_allows_exactly_its_keys(prefix in "[a-c/:]{0,5}", key in "[a-c/:]{0,8}") {
            let policy = json!({
                "Version": "2012-10-17",
                "Statement": {"Effect": "Allow", "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::bucket/{prefix}*")}
            });
            let request = user_request("s3:GetObject", &format!("arn:aws:s3:::bucket/{key}"));
            prop_assert_eq!(identity_only(&policy, &request) == Allow, key.starts_with(&prefix));
        }
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let text = "a".repeat(200_000);
        let started = Instant::now();
        assert!(!wildcard_match("*a*a*a*a*a*b", &text));
        assert!(wildcard_match("*a*a*a*a*a*", &text));
        assert!(!wildcard_match(&format!("{}b", "*a?".repeat(40)), &text));
        assert!(wildcard_match(
            &format!("{}b", "*a?".repeat(40)),
            &format!("{text}b")
        ));
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn wildcard_basics() {
        assert!(wildcard_match("", ""));
        assert!(wildcard_match("*", ""));
        assert!(!wildcard_match("?", ""));
        assert!(wildcard_match("a?c", "abc"));
        assert!(wildcard_match("a?c", "aéc"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*log*", "carlossalazar-logs/file.txt"));
        assert!(!wildcard_match("ABC", "abc"));
    }
}
