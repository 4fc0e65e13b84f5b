// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title ProvenanceRegistry
/// @notice Timestamps Merkle roots of provenance ledgers, so that anyone can later prove that a
/// ledger (and therefore every signed registration in it) existed no later than a given time.
/// @dev Why a storage slot as well as the event: an event-only anchor costs 24.6k gas, but a
/// verifier can then find the root only through `eth_getLogs` over the chain's history, which many
/// public RPC endpoints limit or refuse. One storage slot raises an anchor to 47.0k gas (measured
/// on anvil 1.7.1, solc 0.8.37, optimizer 200 runs) and makes `anchoredAt(root)` a single
/// `eth_call` on any node. A ledger is anchored once per batch but verified many times, so the
/// extra ~22k gas is worth it. The slot holds only the timestamp; size, ledger id and sender are
/// in the event, for indexers.
///
/// The anchorer is deliberately not stored or checked: a root commits to signed ledger entries,
/// so who paid to publish it proves nothing. That also makes front-running harmless — whoever
/// anchors a root first, it is anchored — and re-anchoring reverts instead of overwriting, so
/// the recorded time can only be the earliest one.
contract ProvenanceRegistry {
    /// @notice Block timestamp at which `root` was first anchored; 0 if it never was.
    mapping(bytes32 root => uint64 timestamp) public anchoredAt;

    /// @param root RFC 6962 SHA-256 Merkle root of the ledger's first `size` entries.
    /// @param size Number of ledger entries the root covers.
    /// @param ledgerId The ledger's UUID, as 16 raw bytes.
    /// @param by The account that paid for the anchor (not part of the proof).
    event Anchored(bytes32 indexed root, uint64 size, bytes16 indexed ledgerId, address indexed by);

    /// @notice `root` is already anchored; callers should treat this as success and read
    /// `anchoredAt(root)` for the earlier timestamp.
    error AlreadyAnchored(bytes32 root);

    function anchor(bytes32 root, uint64 size, bytes16 ledgerId) external {
        if (anchoredAt[root] != 0) revert AlreadyAnchored(root);
        anchoredAt[root] = uint64(block.timestamp);
        emit Anchored(root, size, ledgerId, msg.sender);
    }
}
