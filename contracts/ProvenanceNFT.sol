// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {ERC721Utils} from "@openzeppelin/contracts/token/ERC721/utils/ERC721Utils.sol";
import {ERC2981} from "@openzeppelin/contracts/token/common/ERC2981.sol";

/// @title ProvenanceNFT
/// @notice ERC-721 tokens for registered works, each with its own metadata URI and an ERC-2981
/// royalty that keeps paying the original recipient after the token is sold.
/// @dev Minting is open to anyone, with no owner or allow-list: the token is a convenience for
/// marketplaces, not the proof of authorship. That proof is the artist's signed ledger entry
/// and its Merkle root anchored in ProvenanceRegistry, which the token URI's metadata should
/// reference. An allow-list would add an operator to trust without making tokens more truthful.
contract ProvenanceNFT is ERC721URIStorage, ERC2981 {
    uint256 private _lastTokenId;

    constructor() ERC721("Provenance Works", "PROV") {}

    /// @notice Mints the next token (ids start at 1) to `to`, with metadata at `uri` and a
    /// royalty of `royaltyBps` / 10000 of the sale price, paid to `to`.
    /// @dev Reverts with ERC721InvalidReceiver for the zero address or a contract that does not
    /// accept ERC-721 tokens, and with ERC2981InvalidTokenRoyalty above 10000 basis points.
    function mint(address to, string calldata uri, uint96 royaltyBps) external returns (uint256 tokenId) {
        tokenId = ++_lastTokenId;
        _mint(to, tokenId);
        _setTokenURI(tokenId, uri);
        _setTokenRoyalty(tokenId, to, royaltyBps);
        // `_safeMint` would call the receiver before the URI and royalty exist; checking last
        // keeps the safety of `_safeMint` while the receiver sees the token complete.
        ERC721Utils.checkOnERC721Received(msg.sender, address(0), to, tokenId, "");
    }

    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC721URIStorage, ERC2981)
        returns (bool)
    {
        return super.supportsInterface(interfaceId);
    }
}
