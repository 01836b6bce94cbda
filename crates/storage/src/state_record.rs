//! The records of a snapshot or backup file: what they hold and how each format lays them out.
//!
//! Format 3 files hold two sections, each in key order: first every key with its value and
//! revisions (record key `0x00 ++ user key`, value as `value_record.rs` stores it), then the
//! state besides the data (record key `0x01 ++ sm_aux key`). Format 2 files hold only keys and raw
//! values; reading one gives each key the file's revision as its create and mod revision and
//! version 1, which is what a format 2 data directory is upgraded to.

use raftkv_types::Versioned;

use crate::error::{Result, StorageError};
use crate::value_record::{decode_value, upgraded_value};

const SECTION_DATA: u8 = 0x00;
const SECTION_AUX: u8 = 0x01;

/// One record of a snapshot or backup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateRecord {
    /// A key and its value with revisions.
    Data {
        /// The user key.
        key: Vec<u8>,
        /// Its value and revisions.
        value: Versioned,
    },
    /// State besides the data (leases, sessions), as `sm_aux` stores it.
    Aux {
        /// The key within `sm_aux`, without the generation.
        key: Vec<u8>,
        /// The stored value.
        value: Vec<u8>,
    },
}

/// The record key of a data key.
pub(crate) fn data_record_key(user_key: &[u8]) -> Vec<u8> {
    section_key(SECTION_DATA, user_key)
}

/// The record key of an `sm_aux` key.
pub(crate) fn aux_record_key(aux_key: &[u8]) -> Vec<u8> {
    section_key(SECTION_AUX, aux_key)
}

fn section_key(section: u8, key: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + key.len());
    out.push(section);
    out.extend_from_slice(key);
    out
}

/// A record as stored: for data, the `sm_data` value bytes; for aux, the `sm_aux` value bytes.
pub(crate) enum RawRecord {
    /// A data key and its stored value bytes.
    Data(Vec<u8>, Vec<u8>),
    /// An `sm_aux` key and its value bytes.
    Aux(Vec<u8>, Vec<u8>),
}

/// Reads a record of a file of `format_version` whose state is at `revision`, as stored bytes.
pub(crate) fn raw_record(format_version: u32, revision: u64, key: Vec<u8>, value: Vec<u8>) -> Result<RawRecord> {
    if format_version == 2 {
        return Ok(RawRecord::Data(key, upgraded_value(&value, revision)));
    }
    match key.split_first() {
        Some((&SECTION_DATA, user_key)) => Ok(RawRecord::Data(user_key.to_vec(), value)),
        Some((&SECTION_AUX, aux_key)) => Ok(RawRecord::Aux(aux_key.to_vec(), value)),
        _ => Err(StorageError::corrupt("snapshot record", "record key names no section")),
    }
}

impl StateRecord {
    /// Decodes a record of a file of `format_version` whose state is at `revision`.
    pub(crate) fn decode(format_version: u32, revision: u64, key: Vec<u8>, value: Vec<u8>) -> Result<StateRecord> {
        Ok(match raw_record(format_version, revision, key, value)? {
            RawRecord::Data(key, value) => StateRecord::Data { key, value: decode_value(&value)? },
            RawRecord::Aux(key, value) => StateRecord::Aux { key, value },
        })
    }
}
