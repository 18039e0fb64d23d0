//! The JSON Schema of `topology.yaml`, for editors' YAML language servers.
//!
//! Written out by hand because the decoder is hand-written too (it must report every
//! problem at once, which derived deserializers cannot). A test validates every fixture
//! against this schema and checks it agrees with the decoder on which files are
//! well-formed, so the two cannot drift apart unnoticed.

use serde_json::{Value, json};

use crate::topology::Service;

/// The schema as a JSON value.
pub fn topology_schema() -> Value {
    let name = json!({ "type": "string", "pattern": "^[a-z][a-z0-9-]*$" });
    let cidr = json!({
        "type": "string",
        "pattern": r"^\d{1,3}(\.\d{1,3}){3}/\d{1,2}$",
        "description": "IPv4 CIDR block, such as 10.0.1.0/24"
    });
    let services: Vec<&str> = Service::ALL.iter().map(|s| s.as_str()).collect();
    let rule = |peers_key: &str, peers_doc: &str| {
        json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["proto", peers_key],
            "properties": {
                "proto": { "enum": ["tcp", "udp", "icmp", "all"] },
                "ports": {
                    "description": "A port (8080) or an inclusive range (\"12000-12001\"); TCP and UDP only",
                    "oneOf": [
                        { "type": "integer", "minimum": 0, "maximum": 65535 },
                        { "type": "string", "pattern": r"^\d{1,5}(-\d{1,5})?$" }
                    ]
                },
                peers_key: {
                    "description": peers_doc,
                    "oneOf": [
                        { "$ref": "#/$defs/peer" },
                        { "type": "array", "items": { "$ref": "#/$defs/peer" } }
                    ]
                },
                "description": {
                    "type": "string",
                    "maxLength": 255,
                    "pattern": "^[A-Za-z0-9 ._:/()#,@\\[\\]+=&;{}!$*-]*$",
                    "description": "Up to 255 of: letters, digits, spaces and ._-:/()#,@[]+=&;{}!$*"
                },
                "allow_world": {
                    "type": "boolean",
                    "description": "Consent to sources that together cover more than a /8 of public addresses (0.0.0.0/0, or wide blocks); without it such a rule is refused"
                }
            }
        })
    };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://labctl.dev/schema/topology.json",
        "title": "labctl topology",
        "description": "A networking lab on AWS: VPC, security roles, IAM, DNS, capture bucket and instances.",
        "type": "object",
        "additionalProperties": false,
        "required": ["name", "network", "roles", "instances"],
        "properties": {
            "name": {
                "description": "Lab name: tags every resource and prefixes every AWS name",
                "type": "string", "pattern": "^[a-z][a-z0-9-]*[a-z0-9]$", "maxLength": crate::validate::MAX_LAB_NAME
            },
            "region": { "type": "string", "description": "AWS region; --region must agree with it" },
            "network": {
                "type": "object",
                "additionalProperties": false,
                "required": ["cidr", "subnets"],
                "properties": {
                    "cidr": cidr.clone(),
                    "subnets": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": false,
                            "required": ["name", "cidr"],
                            "properties": {
                                "name": name.clone(),
                                "cidr": cidr,
                                "public": { "type": "boolean", "description": "Internet gateway route and public IPv4 on launch" }
                            }
                        }
                    }
                }
            },
            "dns": {
                "type": "object",
                "additionalProperties": false,
                "required": ["zone"],
                "properties": {
                    "zone": { "type": "string", "description": "Private hosted zone; each instance gets <name>.<zone>" },
                    "ttl": { "type": "integer", "minimum": 1, "maximum": 604800 }
                }
            },
            "roles": {
                "description": "One security group per role; only the listed sources are admitted",
                "type": "object",
                "propertyNames": name.clone(),
                "additionalProperties": {
                    "type": ["object", "null"],
                    "additionalProperties": false,
                    "properties": {
                        "ingress": { "type": "array", "items": rule("from", "Who may connect") },
                        "egress": {
                            "description": "Outbound rules; absent means all outbound traffic is allowed",
                            "type": "array", "items": rule("to", "Where instances may connect")
                        }
                    }
                }
            },
            "iam": {
                "type": "object",
                "additionalProperties": false,
                "required": ["instance_role"],
                "properties": {
                    "instance_role": {
                        "type": "object",
                        "additionalProperties": false,
                        "required": ["name"],
                        "properties": {
                            "name": { "type": "string", "description": "The AWS name is <lab>-<name>" },
                            "managed_policies": { "type": "array", "items": { "type": "string" } },
                            "dynamodb": {
                                "type": "object",
                                "description": "DynamoDB access scoped to these tables of the lab's account and region, instead of AmazonDynamoDBFullAccess",
                                "additionalProperties": false,
                                "required": ["tables"],
                                "properties": {
                                    "tables": {
                                        "type": "array",
                                        "minItems": 1,
                                        "items": { "type": "string", "pattern": "^[A-Za-z0-9_.-]{3,255}$" }
                                    }
                                }
                            }
                        }
                    }
                }
            },
            "captures": {
                "type": "object",
                "additionalProperties": false,
                "properties": {
                    "bucket": { "type": "string", "description": "`auto` for <lab>-captures-<account>-<region>, or a bucket name" }
                }
            },
            "instances": {
                "type": "array",
                "items": {
                    "type": "object",
                    "additionalProperties": false,
                    "required": ["name", "role", "type", "image"],
                    "properties": {
                        "name": name.clone(),
                        "role": name.clone(),
                        "type": { "type": "string", "description": "x86_64 instance type such as t3.micro" },
                        "image": {
                            "type": "string",
                            "description": "ubuntu-24.04, an ami-... id, or an SSM parameter path holding an AMI id",
                            "pattern": "^(ubuntu-24\\.04|ami-[0-9a-f]{8}([0-9a-f]{9})?|/.+)$"
                        },
                        "count": { "type": "integer", "minimum": 1, "maximum": crate::validate::MAX_COUNT },
                        "services": { "type": "array", "items": { "enum": services }, "uniqueItems": true },
                        "subnet": name
                    }
                }
            },
            "artifacts": {
                "type": "object",
                "additionalProperties": false,
                "required": ["labnet"],
                "properties": {
                    "labnet": {
                        "oneOf": [
                            { "const": "build" },
                            {
                                "type": "object", "additionalProperties": false,
                                "required": ["path"], "properties": { "path": { "type": "string" } }
                            },
                            {
                                "type": "object", "additionalProperties": false,
                                "required": ["url", "sha256"],
                                "properties": {
                                    "url": { "type": "string", "pattern": "^https://" },
                                    "sha256": { "type": "string", "pattern": "^[0-9a-f]{64}$" }
                                }
                            }
                        ]
                    }
                }
            },
            "lifetime": {
                "description": "Instances stop themselves after this long: whole minutes from 10m to 30d, such as 4h or 1h30m (a bare number is seconds)",
                "oneOf": [
                    {
                        "type": "string",
                        "pattern": "^[0-9]+(d([0-9]+h)?([0-9]+m)?([0-9]+s)?|h([0-9]+m)?([0-9]+s)?|m([0-9]+s)?|s)?$"
                    },
                    { "type": "integer", "minimum": 600, "maximum": 2_592_000, "multipleOf": 60 }
                ]
            }
        },
        "$defs": {
            "peer": {
                "type": "string",
                "description": "role:<name>, an IPv4 CIDR block, or my-ip",
                "pattern": "^(role:[a-z][a-z0-9-]*|my-ip|\\d{1,3}(\\.\\d{1,3}){3}/\\d{1,2})$"
            }
        }
    })
}
