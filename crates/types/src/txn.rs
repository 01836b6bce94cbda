//! Multi-key transactions: comparisons, then one of two lists of operations, applied atomically
//! at one revision (etcd's `Txn`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::key_meta::Versioned;

/// A transaction: if every comparison in `compare` holds, `success` runs, otherwise `failure`.
/// Everything happens in one log entry, so at one revision: no other write comes between the
/// comparisons and the operations, and a reader sees all of the writes or none.
///
/// Operations run in order and each sees the effects of the earlier ones (a `get` after a `put`
/// of the same key reads the new value).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Txn {
    /// The conditions.
    pub compare: Vec<Compare>,
    /// What runs when every condition holds.
    pub success: Vec<TxnOp>,
    /// What runs otherwise.
    pub failure: Vec<TxnOp>,
}

/// One condition on one key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compare {
    /// The key.
    pub key: String,
    /// What of the key is compared, and with what.
    pub target: CompareTarget,
    /// How.
    pub op: CompareOp,
}

/// The part of a key a [`Compare`] looks at, with the operand.
///
/// An absent key has no value, version 0, create and mod revision 0: `version = 0` holds for it,
/// a comparison of its value holds only for `!=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareTarget {
    /// The value, compared bytewise.
    Value(Vec<u8>),
    /// The number of writes since the key was created.
    Version(u64),
    /// The revision that created the key.
    CreateRevision(u64),
    /// The revision of its last write.
    ModRevision(u64),
    /// Whether it exists (only `=` and `!=`).
    Exists(bool),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CompareOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `<`
    Less,
    /// `>`
    Greater,
}

impl CompareOp {
    /// Whether `left op right` holds.
    pub fn holds<T: Ord + ?Sized>(self, left: &T, right: &T) -> bool {
        match self {
            CompareOp::Equal => left == right,
            CompareOp::NotEqual => left != right,
            CompareOp::Less => left < right,
            CompareOp::Greater => left > right,
        }
    }

    /// The operator as the API writes it.
    pub fn symbol(self) -> &'static str {
        match self {
            CompareOp::Equal => "=",
            CompareOp::NotEqual => "!=",
            CompareOp::Less => "<",
            CompareOp::Greater => ">",
        }
    }
}

impl std::str::FromStr for CompareOp {
    type Err = String;

    fn from_str(s: &str) -> Result<CompareOp, String> {
        match s {
            "=" | "==" => Ok(CompareOp::Equal),
            "!=" => Ok(CompareOp::NotEqual),
            "<" => Ok(CompareOp::Less),
            ">" => Ok(CompareOp::Greater),
            other => Err(format!("unknown comparison operator {other:?}; expected =, !=, < or >")),
        }
    }
}

impl Compare {
    /// Whether the comparison holds for `current`, the key's value and revisions (`None`: absent).
    pub fn holds(&self, current: Option<&Versioned>) -> bool {
        let meta = current.map(|v| v.meta).unwrap_or_default();
        match &self.target {
            CompareTarget::Value(expected) => match current {
                Some(v) => self.op.holds(v.value.as_slice(), expected.as_slice()),
                None => self.op == CompareOp::NotEqual,
            },
            CompareTarget::Version(n) => self.op.holds(&meta.version, n),
            CompareTarget::CreateRevision(n) => self.op.holds(&meta.create_revision, n),
            CompareTarget::ModRevision(n) => self.op.holds(&meta.mod_revision, n),
            CompareTarget::Exists(expected) => self.op.holds(&current.is_some(), expected),
        }
    }
}

/// One operation of a transaction branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOp {
    /// Set `key` to `value`, attached to `lease` if given (and detached from any other).
    Put {
        /// The key.
        key: String,
        /// The new value.
        value: Vec<u8>,
        /// The lease to attach the key to.
        lease: Option<u64>,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: String,
    },
    /// Remove every key starting with `prefix`.
    DeletePrefix {
        /// The prefix (not empty).
        prefix: String,
    },
    /// Read `key` as of this point of the transaction.
    Get {
        /// The key.
        key: String,
    },
}

impl TxnOp {
    /// The key or prefix the operation names.
    pub fn key(&self) -> &str {
        match self {
            TxnOp::Put { key, .. } | TxnOp::Delete { key } | TxnOp::Get { key } => key,
            TxnOp::DeletePrefix { prefix } => prefix,
        }
    }

    /// Bytes of keys and values the operation carries.
    pub fn size(&self) -> usize {
        match self {
            TxnOp::Put { key, value, .. } => key.len() + value.len(),
            other => other.key().len(),
        }
    }
}

impl Txn {
    /// Bytes of keys and values the transaction carries, comparisons included.
    pub fn size(&self) -> usize {
        let compares: usize = self
            .compare
            .iter()
            .map(|c| c.key.len() + if let CompareTarget::Value(v) = &c.target { v.len() } else { 8 })
            .sum();
        compares + self.success.iter().chain(&self.failure).map(TxnOp::size).sum::<usize>()
    }

    /// Comparisons and operations in all.
    pub fn len(&self) -> usize {
        self.compare.len() + self.success.len() + self.failure.len()
    }

    /// Whether the transaction has no comparison and no operation.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl fmt::Display for Txn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "txn({} compares, {} success, {} failure)",
            self.compare.len(),
            self.success.len(),
            self.failure.len()
        )
    }
}

/// What one operation of the branch that ran did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnOpResult {
    /// The key was written.
    Put,
    /// Keys removed (0 or 1 for a delete, any number for a delete-prefix).
    Delete {
        /// How many.
        deleted: u64,
    },
    /// The key's value and revisions (`None`: absent).
    Get {
        /// What was read.
        found: Option<Versioned>,
    },
}

/// What applying a transaction did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOutcome {
    /// Whether every comparison held (so `success` ran, else `failure`).
    pub succeeded: bool,
    /// One result per operation of the branch that ran.
    pub results: Vec<TxnOpResult>,
}
