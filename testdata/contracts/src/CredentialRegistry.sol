// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// On-chain credentials for permissioned pools: trusted issuers attest claims (KYC, not
/// sanctioned, accredited, human) about subjects; pools declare which claims they require.
///
/// Storage layout (so that a pre-state can hold credentials without running transactions):
/// - slot 0: `admin` (address, low 20 bytes).
/// - slot 1: `issuers`, mapping(address => Issuer); for issuer `i`, base = keccak256(i . 1):
///   base + 0 = `claimMask` (uint256, bit c set = may attest claim c), base + 1 = `active`
///   (bool, lowest byte) and `selfAttest` (bool, next byte: may issue credentials to itself).
/// - slot 2: `credentials`, mapping(address => mapping(uint8 => Credential)); for subject
///   `s` and claim `c`: keccak256(c . keccak256(s . 2)) holds, packed from the low end,
///   `issuer` (20 bytes), `expiresAt` (uint64, next 8 bytes), `revoked` (bool, next byte).
/// - slot 3: `poolPolicy`, mapping(address => uint256): keccak256(pool . 3) = required claim
///   mask; a pool with a non-zero mask is gated.
/// - slot 4: `poolOptions`, mapping(address => uint256): keccak256(pool . 4); bit 0
///   (`CALLER_CHAIN`) = every contract between the sender and the pool must hold the
///   required claims too, or be an approved router.
/// - slot 5: `approvedRouter`, mapping(address => bool): keccak256(router . 5).
/// (`.` is the 32-byte left-padded concatenation Solidity uses for mapping keys.)
contract CredentialRegistry {
    uint8 public constant KYC = 0;
    uint8 public constant NOT_SANCTIONED = 1;
    uint8 public constant ACCREDITED = 2;
    uint8 public constant HUMAN = 3;
    /// `poolOptions` bit: the contracts between the sender and the pool are checked too.
    uint256 public constant CALLER_CHAIN = 1;

    struct Issuer {
        uint256 claimMask;
        bool active;
        bool selfAttest;
    }

    struct Credential {
        address issuer;
        uint64 expiresAt;
        bool revoked;
    }

    address public admin;
    mapping(address => Issuer) public issuers;
    mapping(address => mapping(uint8 => Credential)) public credentials;
    mapping(address => uint256) public poolPolicy;
    mapping(address => uint256) public poolOptions;
    mapping(address => bool) public approvedRouter;

    event IssuerSet(address indexed issuer, uint256 claimMask, bool active);
    event Issued(address indexed subject, uint8 indexed claim, address indexed issuer, uint64 expiresAt);
    event Revoked(address indexed subject, uint8 indexed claim, address indexed by);
    event PoolPolicySet(address indexed pool, uint256 requiredClaims);
    event SelfAttestationSet(address indexed issuer, bool allowed);
    event PoolOptionsSet(address indexed pool, uint256 options);
    event RouterSet(address indexed router, bool approved);

    constructor(address admin_) {
        admin = admin_;
    }

    modifier onlyAdmin() {
        require(msg.sender == admin, "admin only");
        _;
    }

    /// Sets what `issuer` may attest and whether it is active; its self-attestation
    /// permission is kept.
    function setIssuer(address issuer, uint256 claimMask, bool active) external onlyAdmin {
        Issuer storage entry = issuers[issuer];
        entry.claimMask = claimMask;
        entry.active = active;
        emit IssuerSet(issuer, claimMask, active);
    }

    /// Allows or forbids `issuer` to issue credentials to itself (forbidden by default).
    function setSelfAttestation(address issuer, bool allowed) external onlyAdmin {
        issuers[issuer].selfAttest = allowed;
        emit SelfAttestationSet(issuer, allowed);
    }

    function issue(address subject, uint8 claim, uint64 expiresAt) external {
        Issuer memory issuer = issuers[msg.sender];
        require(issuer.active, "issuer inactive");
        require(claim < 256 && (issuer.claimMask >> claim) & 1 == 1, "issuer not allowed");
        require(subject != msg.sender || issuer.selfAttest, "self-attestation");
        credentials[subject][claim] = Credential(msg.sender, expiresAt, false);
        emit Issued(subject, claim, msg.sender, expiresAt);
    }

    function revoke(address subject, uint8 claim) external {
        Credential storage credential = credentials[subject][claim];
        require(msg.sender == credential.issuer || msg.sender == admin, "not issuer or admin");
        credential.revoked = true;
        emit Revoked(subject, claim, msg.sender);
    }

    function setPoolPolicy(address pool, uint256 requiredClaims) external onlyAdmin {
        poolPolicy[pool] = requiredClaims;
        emit PoolPolicySet(pool, requiredClaims);
    }

    function setPoolOptions(address pool, uint256 options) external onlyAdmin {
        poolOptions[pool] = options;
        emit PoolOptionsSet(pool, options);
    }

    function setRouter(address router, bool approved) external onlyAdmin {
        approvedRouter[router] = approved;
        emit RouterSet(router, approved);
    }
}
