//! Finding and removing consumer-group members that crashed engines left
//! behind.
//!
//! A member that dies without leaving its group holds its partitions until
//! the group coordinator notices its session has ended. Apache Kafka does
//! that after `session.timeout.ms`; tansu 0.6 does not do it at all, so a
//! killed engine's partitions would never move. The engines of a cluster
//! know better: each publishes its members' ids, and when one stops
//! refreshing its record, another sends the group coordinator the
//! `LeaveGroup` request the dead engine could not send (the same request
//! Kafka's admin API sends to remove members). librdkafka has no call for
//! it, so it is spoken here with the `kafka-protocol` crate:
//! `FindCoordinator`, `DescribeGroups` and `LeaveGroup`, all at version 0,
//! which every broker accepts. Plaintext only: with SASL or TLS the request is not
//! sent, and the coordinator's own session timeout does the job (slower).

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context as _;
use bytes::{Buf as _, BytesMut};
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse,
    LeaveGroupRequest, LeaveGroupResponse, RequestHeader,
};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};

const TIMEOUT: Duration = Duration::from_secs(5);
const UNKNOWN_MEMBER_ID: i16 = 25;

/// Asks `group`'s coordinator to remove `member`. Returns whether it was
/// still a member.
pub fn remove_member(bootstrap: &str, group: &str, member: &str) -> anyhow::Result<bool> {
    let mut last_error = None;
    for broker in bootstrap.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        match coordinator(broker, group) {
            Ok(coordinator) => return leave(&coordinator, group, member),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no brokers in `{bootstrap}`")))
}

/// The ids of `group`'s members, as its coordinator lists them.
pub fn members(bootstrap: &str, group: &str) -> anyhow::Result<Vec<String>> {
    let mut last_error = None;
    for broker in bootstrap.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        match coordinator(broker, group) {
            Ok(coordinator) => return describe(&coordinator, group),
            Err(error) => last_error = Some(error),
        }
    }
    Err(last_error.unwrap_or_else(|| anyhow::anyhow!("no brokers in `{bootstrap}`")))
}

fn describe(coordinator: &str, group: &str) -> anyhow::Result<Vec<String>> {
    let request =
        DescribeGroupsRequest::default().with_groups(vec![StrBytes::from_string(group.to_string()).into()]);
    let response: DescribeGroupsResponse = call(coordinator, &request, 0)?;
    let described = response.groups.into_iter().next().context("DescribeGroups answered no group")?;
    anyhow::ensure!(
        described.error_code == 0,
        "DescribeGroups for `{group}`: error {}",
        described.error_code
    );
    Ok(described.members.into_iter().map(|m| m.member_id.to_string()).collect())
}

fn coordinator(broker: &str, group: &str) -> anyhow::Result<String> {
    let request = FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string()));
    let response: FindCoordinatorResponse = call(broker, &request, 0)?;
    anyhow::ensure!(response.error_code == 0, "FindCoordinator for `{group}`: error {}", response.error_code);
    Ok(format!("{}:{}", response.host.as_str(), response.port))
}

fn leave(coordinator: &str, group: &str, member: &str) -> anyhow::Result<bool> {
    let request = LeaveGroupRequest::default()
        .with_group_id(StrBytes::from_string(group.to_string()).into())
        .with_member_id(StrBytes::from_string(member.to_string()));
    let response: LeaveGroupResponse = call(coordinator, &request, 0)?;
    match response.error_code {
        0 => Ok(true),
        UNKNOWN_MEMBER_ID => Ok(false),
        code => anyhow::bail!("LeaveGroup for member {member} of `{group}`: error {code}"),
    }
}

/// Sends one request and reads its response, on a connection of its own.
fn call<R: Request>(broker: &str, request: &R, version: i16) -> anyhow::Result<R::Response> {
    let api_key = ApiKey::try_from(R::KEY).map_err(|_| anyhow::anyhow!("unknown API key {}", R::KEY))?;
    let header = RequestHeader::default()
        .with_request_api_key(R::KEY)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .with_client_id(Some(StrBytes::from_static_str("sluice")));
    let mut body = BytesMut::new();
    header.encode(&mut body, api_key.request_header_version(version))?;
    request.encode(&mut body, version)?;

    let address = broker.parse().or_else(|_| {
        std::net::ToSocketAddrs::to_socket_addrs(broker)?
            .next()
            .ok_or_else(|| std::io::Error::other("no address"))
    });
    let address = address.with_context(|| format!("cannot resolve {broker}"))?;
    let mut stream =
        TcpStream::connect_timeout(&address, TIMEOUT).with_context(|| format!("cannot reach {broker}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.write_all(&(body.len() as i32).to_be_bytes())?;
    stream.write_all(&body)?;
    let mut length = [0u8; 4];
    stream.read_exact(&mut length).with_context(|| format!("{broker} did not answer"))?;
    let length = i32::from_be_bytes(length).max(0) as usize;
    // These answers are a few hundred bytes; anything near this is not Kafka.
    anyhow::ensure!(length <= 1 << 20, "{broker} answered with {length} bytes: not a Kafka broker?");
    let mut response = vec![0u8; length];
    stream.read_exact(&mut response)?;
    let mut response = bytes::Bytes::from(response);
    // Response header v0: the correlation id (v1 adds tagged fields).
    if api_key.response_header_version(version) >= 1 {
        anyhow::bail!("flexible response headers are not read here");
    }
    let _correlation = response.get_i32();
    R::Response::decode(&mut response, version)
}
