-- OSGP (Open Smart Grid Protocol, ETSI TS 104 001 / CLC/TS 50586) for Wireshark.
--
-- Shipped with the osgp Python package (docs/wireshark.md).  Install with
-- `osgp wireshark --install`, or run `tshark -X lua_script:osgp_dissector.lua`.
--
-- What it decodes, as osgp's PLC profile bundle defines it (docs/protocol.md):
--   * power line: the OSGP message is the LonTalk APDU of an SPDU REQUEST /
--     RESPONSE (ISO/IEC 14908-1); Wireshark's `lon` dissector decodes the
--     LonTalk layers, this plugin sits behind it on the CN/IP table
--     ("cnip.protocol" 0, packet-cnip.c / packet-lon.c) and decodes the APDU;
--   * requests 0x30/0x3F/0x40/0x4F (table, offset, count, data), the
--     sequence number and the 8-byte OMA digest; responses by code;
--     procedures through BT07 writes and BT08 reads;
--   * Annex G proxy frames (0x4D request and success, 0x4C failure) with the
--     repeater list, SICB and target (LonTalk Enhanced Proxy layout);
--   * MEP serial frames (2-byte length) on a DLT_USER link type, since no
--     standard capture format carries MEP;
--   * the OSGP-AES-128-PSK envelope of the PLC-AES / MEP-AES bundles
--     (sequence number, ciphertext, CCM tag; nonce and key id from the key
--     file), the tag verified and the message decrypted by AES-128 and CCM
--     written here, since Wireshark 4.0's Lua API has no cipher binding;
--   * digest verification and RC4 decryption with keys from a UAT-format key
--     file (address, key[, suite, key id, nonce address]): Wireshark 4.0's Lua
--     API cannot create a UAT preference (docs/wireshark.md).
-- Every INFERRED choice (the PLC envelope, the AES frame, Annex G as LonTalk proxy) says so
-- in the field descriptions.  The constants block is generated from osgp's
-- own tables by osgp/wireshark/generate.py: do not edit it by hand.

local C = {}
-- BEGIN GENERATED CONSTANTS (python -m osgp.wireshark.generate --write)
C.OSGP_VERSION = "0.1.0"
C.REQUEST = {
  [48] = "full read",
  [63] = "partial read",
  [64] = "full write",
  [79] = "partial write",
}
C.RESPONSE = {
  [0] = "ok",
  [1] = "error",
  [2] = "service not supported",
  [3] = "insufficient security clearance",
  [4] = "operation not possible",
  [5] = "inappropriate action requested",
  [6] = "device busy",
  [7] = "data not ready",
  [8] = "data locked",
  [9] = "renegotiate request",
  [10] = "invalid service sequence state",
  [11] = "authentication failure",
  [12] = "invalid sequence number",
}
C.RESPONSE_ABBR = {
  [0] = "OK",
  [1] = "ERR",
  [2] = "SNS",
  [3] = "ISC",
  [4] = "ONP",
  [5] = "IAR",
  [6] = "BSY",
  [7] = "DNR",
  [8] = "DLK",
  [9] = "RNO",
  [10] = "ISSS",
  [11] = "AUTH",
  [12] = "SEQ",
}
C.TABLES = {
  [0] = {"BT00", "General configuration"},
  [1] = {"BT01", "General Manufacturer Identification"},
  [2] = {"BT02", "Device Nameplate"},
  [3] = {"BT03", "End Device Mode Status"},
  [4] = {"BT04", "Pending Status"},
  [5] = {"BT05", "Device Identification"},
  [6] = {"BT06", "Utility Information"},
  [7] = {"BT07", "Procedure Initiate"},
  [8] = {"BT08", "Procedure Response"},
  [10] = {"BT10", "Dimension Sources Limiting"},
  [12] = {"BT12", "Unit of Measure Entry"},
  [13] = {"BT13", "Demand Control"},
  [15] = {"BT15", "Constants"},
  [16] = {"BT16", "Source Definition"},
  [20] = {"BT20", "Dimension Register"},
  [21] = {"BT21", "Actual Register"},
  [22] = {"BT22", "Data Selection"},
  [23] = {"BT23", "Current Register Data"},
  [24] = {"BT24", "Previous Season Data"},
  [25] = {"BT25", "Previous Demand Reset Data"},
  [26] = {"BT26", "Self Read Data"},
  [27] = {"BT27", "Present Register Selection"},
  [28] = {"BT28", "Present Register Data"},
  [30] = {"BT30", "Dimension Display"},
  [33] = {"BT33", "Primary Display List"},
  [50] = {"BT50", "Dimension Time and TOU"},
  [52] = {"BT52", "Clock"},
  [53] = {"BT53", "Time Offset"},
  [54] = {"BT54", "Calendar"},
  [55] = {"BT55", "Clock state"},
  [60] = {"BT60", "Dimension Load Profile"},
  [61] = {"BT61", "Actual Load Profile"},
  [62] = {"BT62", "Load Profile Control"},
  [63] = {"BT63", "Load Profile Status"},
  [64] = {"BT64", "Load Profile Data"},
  [70] = {"BT70", "Dimension Log"},
  [71] = {"BT71", "Actual Log"},
  [72] = {"BT72", "Events Identification"},
  [73] = {"BT73", "History Log Control"},
  [74] = {"BT74", "History Log Data"},
  [2048] = {"ET00", "Manufacturer Specific"},
  [2049] = {"ET01", "Manufacturer Specific"},
  [2050] = {"ET02", "RTC calibration"},
  [2051] = {"ET03", "Utility Information"},
  [2052] = {"ET04", "System Information"},
  [2053] = {"ET05", "Control Output Settings"},
  [2054] = {"ET06", "Pulse Inputs"},
  [2055] = {"ET07", "Display Configuration"},
  [2056] = {"ET08", "Manufacturer Specific"},
  [2057] = {"ET09", "Power Quality"},
  [2058] = {"ET10", "Internal Power Outages"},
  [2059] = {"ET11", "MFG Dimension"},
  [2060] = {"ET12", "Daily Consumption"},
  [2061] = {"ET13", "M-Bus/MEP Device config"},
  [2062] = {"ET14", "M-Bus/MEP Device Status"},
  [2063] = {"ET15", "MEP On-demand Requests"},
  [2065] = {"ET17", "Code Bank Info"},
  [2066] = {"ET18", "Manufacturer Specific"},
  [2067] = {"ET19", "Meter One-Time Read Queue"},
  [2068] = {"ET20", "M-Bus One Time Read Queue"},
  [2069] = {"ET21", "Load Profile Internal Configuration"},
  [2070] = {"ET22", "Error Codes Configuration"},
  [2075] = {"ET27", "Transaction Request Table"},
  [2076] = {"ET28", "Transaction Response Table"},
  [2077] = {"ET29", "Hardware Configurations"},
  [2078] = {"ET30", "Maximum power or current level control"},
  [2079] = {"ET31", "Meter One-Time Read Log"},
  [2080] = {"ET32", "MEP One-Time Read Log"},
  [2081] = {"ET33", "Group Configuration"},
  [2082] = {"ET34", "MEP Device Configuration 2"},
  [2083] = {"ET35", "Manufacturer Specific"},
  [2084] = {"ET36", "Mfg Actual Dimensions"},
  [2085] = {"ET37", "Build Information"},
  [2086] = {"ET38", "Manufacturer Specific"},
  [2087] = {"ET39", "Previous Demand"},
  [2088] = {"ET40", "Demand Configuration"},
  [2089] = {"ET41", "Historical Demand Reset Log"},
  [2090] = {"ET42", "Interface Definition"},
  [2091] = {"ET43", "Test Mode Configuration"},
  [2092] = {"ET44", "Test Mode Status"},
  [2093] = {"ET45", "MEP Recurring Read Log"},
  [2094] = {"ET46", "Control Output Read Only Data"},
  [2095] = {"ET47", "Calendar Override Settings"},
  [2096] = {"ET48", "Feature Activation Table"},
  [2097] = {"ET49", "LCD Output Table"},
  [2098] = {"ET50", "MEP Inbound Data Space"},
  [2099] = {"ET51", "MEP Device Configuration"},
  [2100] = {"ET52", "MEP Transaction Request Table"},
  [2101] = {"ET53", "MEP Transaction Response Table"},
  [2102] = {"ET54", "Meter Status"},
  [2103] = {"ET55", "Meter Configuration"},
  [2104] = {"ET56", "Load side state calibration"},
  [2105] = {"ET57", "M-Bus Data Type Table"},
  [2106] = {"ET58", "MEA Status Extension"},
  [2107] = {"ET59", "MEP Procedure Response"},
  [2108] = {"ET60", "Configurable Energy Accumulator Settings"},
  [2109] = {"ET61", "Time-Based Relay Control"},
  [2110] = {"ET62", "Load profile Display Configuration"},
  [2114] = {"ET66", "Load Profile Source ID Mapping Table"},
  [2115] = {"ET67", "Display Source ID Mapping Table"},
  [2116] = {"ET68", "Critical Events"},
  [2117] = {"ET69", "Critical Events Bitmasks"},
  [2118] = {"ET70", "RAM only status"},
  [2119] = {"ET71", "MEP Delta Data and Config"},
  [3086] = {"ET1038", "Manufacturer Specific"},
  [4150] = {"BT4150", "Pending TOU Calendar"},
  [6191] = {"ET4143", "Calendar Override Settings"},
  [6204] = {"ET4156", "Configurable Energy Accumulator Settings"},
}
C.PROCEDURES = {
  [4] = {"BP04", "Reset List Pointers"},
  [5] = {"BP05", "Update Last Read Entry"},
  [6] = {"BP06", "Change Mode"},
  [10] = {"BP10", "Set Date and Time"},
  [12] = {"BP12", "Activate All Pending Tables"},
  [13] = {"BP13", "Activate Specific Pending Tables"},
  [14] = {"BP14", "Clear All Pending Tables"},
  [15] = {"BP15", "Clear Specific Pending Tables"},
  [2048] = {"EP00", "Manufacturer Specific"},
  [2049] = {"EP01", "NV Memory Refresh"},
  [2050] = {"EP02", "Control Output Command"},
  [2051] = {"EP03", "Clear Alarms"},
  [2052] = {"EP04", "Manufacturer Specific"},
  [2053] = {"EP05", "Manufacturer Specific"},
  [2054] = {"EP06", "NVM Config"},
  [2055] = {"EP07", "Manufacturer Specific"},
  [2056] = {"EP08", "Erase code memory"},
  [2057] = {"EP09", "Download Code Packet"},
  [2058] = {"EP10", "Switch Code Bank"},
  [2059] = {"EP11", "Configure/Reset Load Profile Data Set"},
  [2060] = {"EP12", "Record Self-Read"},
  [2061] = {"EP13", "Write single Bit in Table"},
  [2062] = {"EP14", "Manufacturer Specific"},
  [2063] = {"EP15", "Set Tariff"},
  [2064] = {"EP16", "Change System Clock by Delta"},
  [2065] = {"EP17", "Remove M-Bus/MEP Device"},
  [2066] = {"EP18", "Clear MEP Alarm"},
  [2067] = {"EP19", "Post On-demand M-Bus Request"},
  [2069] = {"EP21", "Add prepay credit"},
  [2070] = {"EP22", "Switch maximum power or current level"},
  [2071] = {"EP23", "Remote Disconnect Request"},
  [2072] = {"EP24", "Post On-Time Read Request"},
  [2073] = {"EP25", "Reset Extended Table Logs and Queues"},
  [2074] = {"EP26", "Update Mfg Lists Unread Entries"},
  [2075] = {"EP27", "Add/Remove Group ID"},
  [2076] = {"EP28", "Enable/Disable Battery"},
  [2077] = {"EP29", "Read/Write Diagnostic Counters"},
  [2078] = {"EP30", "Synchronize Disconnect Status"},
  [2079] = {"EP31", "Activate Feature"},
  [2080] = {"EP32", "Billing Dimension Configuration"},
  [2081] = {"EP33", "Billing Reconfiguration"},
  [2082] = {"EP34", "Demand Reset"},
  [2084] = {"EP36", "Schedule Disconnect Lock Open"},
  [2085] = {"EP37", "NVM Config"},
  [2087] = {"EP39", "Post MEP Data (Urgent or Non-Urgent)"},
  [2089] = {"EP41", "MEP Download Initialize"},
  [2090] = {"EP42", "Control Output Settings"},
  [2092] = {"EP44", "IO Control"},
  [2093] = {"EP45", "Manufacturer Specific"},
  [2094] = {"EP46", "Manufacturer Specific"},
  [2095] = {"EP47", "Manufacturer Specific"},
  [2096] = {"EP48", "Manufacturer Specific"},
  [2097] = {"EP49", "Manufacturer Specific"},
}
C.PROC_RESULTS = {
  [0] = "completed",
  [1] = "accepted, not fully completed",
  [2] = "invalid parameter",
  [3] = "conflicts with current setup",
  [4] = "timing constraint",
  [5] = "no authorisation",
  [6] = "unrecognised procedure",
}
C.PROC_SELECTORS = {
  [0] = "respond on completion",
  [1] = "respond on exception only",
  [2] = "no response",
  [3] = "respond at once and on completion",
}
C.IDS = {
  ET = 2048,
  PENDING = 4096,
  BT07 = 7,
  BT08 = 8,
  AUTH_FAILURE = 11,
  INVALID_SEQUENCE = 12,
}
C.PLC = {
  name = "PLC",
  message_code = nil,
  max_apdu = 95,
  max_proxy_apdu = 102,
  pdu_spdu = 1,
  service_request = 0,
  service_response = 2,
  seq_size = 4,
  digest_size = 8,
  chain_response = true,
  auth_failure_in_clear = true,
  key_sizes = {12},
  continues_keystream = false,
  rc4_r1 = "813f529a7be389ba",
  rc4_r2 = "72b0918d4405aa57",
  framing_status = "INFERRED: ISO/IEC 14908-1; Wireshark packet-lon.c: frames CONFIRMED; OSGP message = the APDU, requests as SPDU REQUEST, responses as SPDU RESPONSE (OSGP PLC header not public)",
  envelope_status = "INFERRED: MEP trailer (seq:4, digest:8, response digest chained) inside the APDU, PLC RC4 key derivation from a public reimplementation",
  proxy_status = "INFERRED: Annex G repeating as the LonTalk Enhanced Proxy (0x4D/0x4C, lcs_proxy.c)",
}
C.MEP = {
  name = "MEP",
  length_size = 2,
  max_message = 476,
  seq_size = 4,
  digest_size = 8,
  chain_response = true,
  auth_failure_in_clear = true,
  key_sizes = {16, 17, 18, 19, 20},
  continues_keystream = true,
  const_key = "388b8fbc36a8558587afc90fb23a3b99",
  framing_status = "VERIFIED: OSGP Alliance MEP Client Developer's Guide v1.1 p.8-21, examples p.15-17, 44-53",
  envelope_status = "VERIFIED: OSGP Alliance MEP Client Developer's Guide v1.1 p.9-17, App. A/B; digests p.14-17",
}
C.PROXY = {
  code = 77,
  fail = 76,
  max_repeaters = 15,
  max_data = 102,
  mode_alt_key = 2,
}
C.PROXY_TARGET_LEN = {
  [0] = 2,
  [1] = 2,
  [2] = 7,
  [3] = 2,
  [4] = 1,
  [5] = 1,
  [6] = 6,
  [7] = 1,
}
C.PROXY_MODES = {
  [0] = "normal",
  [1] = "zero sync",
  [2] = "alternate key",
  [3] = "attenuate",
}
C.EVENTS = {
  [1] = "power down",
  [2] = "power up",
  [3] = "time changed (old time)",
  [4] = "time changed (new time)",
  [9] = "procedure invoked",
  [10] = "table written",
  [15] = "updated list pointers",
  [20] = "demand reset",
  [21] = "self read",
  [28] = "pending table activation",
  [29] = "pending table clear",
  [42] = "clock error",
  [47] = "tamper attempt",
}
C.MFG_EVENTS = {
  [1] = "contactor opened",
  [2] = "contactor closed",
  [3] = "group added",
  [4] = "group removed",
  [5] = "load profile reset",
  [6] = "key staged",
  [7] = "key renewed",
  [8] = "key usage warning",
  [64] = "credit added",
  [65] = "credit exhausted",
  [66] = "max level exceeded",
  [67] = "disconnect locked",
  [68] = "disconnect unlocked",
  [69] = "control relay opened",
  [70] = "control relay closed",
  [71] = "one-time read",
  [72] = "code bank changed",
  [73] = "firmware rejected",
}
C.AES_PLC = {
  suite = "OSGP-AES-128-PSK",
  seq_size = 4,
  tag_len = 8,
  nonce_len = 13,
  address_len = 6,
  down = 0,
  up = 1,
  request_aad = "",
  bind_response = true,
  auth_failure_in_clear = true,
  nonce_example = {1, "a1a2a3a4a5a6", 258, 50595078},
  nonce_example_value = "01a1a2a3a4a5a6010203040506",
  envelope_status = "INFERRED: OSGP-AES-128-PSK: CCM frame (RFC 3610, EAP-GPSK RFC 5433) as the APDU",
  layout_status = "INFERRED: Annex F CCM frame (osgp_psk.AesPskProfile) as the LonTalk APDU (docs/protocol.md \194\1673.1, \194\1675.1; \194\16710.1)",
}
C.AES_MEP = {
  suite = "OSGP-AES-128-PSK",
  seq_size = 4,
  tag_len = 8,
  nonce_len = 13,
  address_len = 6,
  down = 0,
  up = 1,
  request_aad = "",
  bind_response = true,
  auth_failure_in_clear = true,
  nonce_example = {1, "a1a2a3a4a5a6", 258, 50595078},
  nonce_example_value = "01a1a2a3a4a5a6010203040506",
  envelope_status = "INFERRED: OSGP-AES-128-PSK: CCM frame (RFC 3610, EAP-GPSK RFC 5433); layout not public",
  layout_status = "INFERRED: Annex F CCM frame (osgp_psk.AesPskProfile) as the MEP message body",
}
-- END GENERATED CONSTANTS

-- XOR of two bytes: Wireshark's BitOp library, Lua 5.2's bit32, or arithmetic
local bxor = (bit and bit.bxor) or (bit32 and bit32.bxor) or function(a, b)
    local r, p = 0, 1
    for _ = 1, 8 do
        if a % 2 ~= b % 2 then r = r + p end
        a, b, p = math.floor(a / 2), math.floor(b / 2), p * 2
    end
    return r
end

---------------------------------------------------------------------------
-- byte helpers: messages are Lua arrays of integers 0..255 (1-based)
---------------------------------------------------------------------------
local function range_bytes(r)
    local ba, out = r:bytes(), {}
    for i = 0, ba:len() - 1 do out[i + 1] = ba:get_index(i) end
    return out
end

local function hex_bytes(hex)
    local out = {}
    for i = 1, #hex - 1, 2 do out[#out + 1] = tonumber(hex:sub(i, i + 1), 16) end
    return out
end

local function to_hex(a)
    local t = {}
    for i = 1, #a do t[i] = string.format("%02x", a[i]) end
    return table.concat(t)
end

local function concat(a, b)
    local out = {}
    for i = 1, #a do out[i] = a[i] end
    for i = 1, #b do out[#a + i] = b[i] end
    return out
end

local function slice(a, i, j)
    local out = {}
    for k = i, j do out[#out + 1] = a[k] end
    return out
end

local function equal(a, b)
    if #a ~= #b then return false end
    for i = 1, #a do if a[i] ~= b[i] then return false end end
    return true
end

local function all_zero(a)
    for i = 1, #a do if a[i] ~= 0 then return false end end
    return true
end

---------------------------------------------------------------------------
-- OMA digest (CLC/TS 50586 Annex E; MEP guide App. A; docs/protocol.md §2.1,
-- §2.3): 8-byte state from zero, blocks of 8 x (key steps) bytes zero-filled,
-- state bytes visited 7..0, key bit (l mod 8) of key byte (l div 8) mod klen.
---------------------------------------------------------------------------
local KEY_STEPS = { [6] = 6, [12] = 18, [16] = 24 } -- key bytes per block (MEP App. A)

-- one update of state byte v: d[v] = d[v+1] + m +/- rot(~(d[v] + v))
local function oma_step(d, v, m, kbit)
    local n = 255 - ((d[v + 1] + v) % 256)
    local r
    if kbit == 1 then
        r = (n * 2) % 256 + math.floor(n / 128)
    else
        r = -(math.floor(n / 2) + (n % 2) * 128)
    end
    d[v + 1] = (d[(v + 1) % 8 + 1] + m + r) % 256
end

local function oma_digest(key, msg)
    local klen = #key
    local block = 8 * KEY_STEPS[klen]
    local d = { 0, 0, 0, 0, 0, 0, 0, 0 }
    local n = #msg
    local padded = block -- an empty message is one block of zeros
    if n > 0 then padded = math.ceil(n / block) * block end
    local pos = 0
    for l = 0, padded - 1 do
        local t = pos % 8
        local kb = key[math.floor(pos / 8) % klen + 1]
        oma_step(d, 7 - t, msg[l + 1] or 0, math.floor(kb / 2 ^ t) % 2)
        pos = pos + 1
        if pos == block then pos = 0 end
    end
    return d
end

-- ISO/IEC 14908-1 authentication function, classic 6-byte key: state from the
-- challenge, message consumed from its end, at least one pass (lcs_tsa.c;
-- docs/protocol.md §2.2, §2.4)
local function en14908(challenge, msg, key)
    local d = {}
    for i = 1, 8 do d[i] = challenge[i] end
    local p = #msg
    repeat
        for i = 0, #key - 1 do
            local kb = key[i + 1]
            for j = 7, 0, -1 do
                local m = 0
                if p > 0 then m = msg[p]; p = p - 1 end
                oma_step(d, j, m, math.floor(kb / 2 ^ (7 - j)) % 2)
            end
        end
    until p == 0
    return d
end

---------------------------------------------------------------------------
-- RC4 (plain, no keystream discarded; docs/protocol.md §2.4)
---------------------------------------------------------------------------
local function rc4_new(key)
    local s, j = {}, 0
    for i = 0, 255 do s[i] = i end
    for i = 0, 255 do
        j = (j + s[i] + key[i % #key + 1]) % 256
        s[i], s[j] = s[j], s[i]
    end
    return { s = s, x = 0, y = 0 }
end

local function rc4_process(st, data)
    local s, x, y, out = st.s, st.x, st.y, {}
    for i = 1, #data do
        x = (x + 1) % 256
        y = (y + s[x]) % 256
        s[x], s[y] = s[y], s[x]
        out[i] = bxor(data[i], s[(s[x] + s[y]) % 256])
    end
    st.x, st.y = x, y
    return out
end

-- per-message RC4 key: the base key with bytes 0..7 XOR the digest
local function message_key(base, digest)
    local k = {}
    for i = 1, 16 do k[i] = base[i] end
    for i = 1, 8 do k[i] = bxor(base[i], digest[i]) end
    return k
end

---------------------------------------------------------------------------
-- AES-128 (FIPS-197) and CCM (NIST SP 800-38C, RFC 3610) for the
-- OSGP-AES-128-PSK envelope: Wireshark 4.0's Lua API has no cipher binding.
-- Bytewise, forward cipher only (CCM needs no inverse cipher).
---------------------------------------------------------------------------
local function xtime(b) -- b * x modulo x^8 + x^4 + x^3 + x + 1 (FIPS-197 4.2.1)
    b = b * 2
    if b >= 256 then b = bxor(b - 256, 0x1B) end
    return b
end

local SBOX = {} -- FIPS-197 5.1.1: inverse in GF(2^8), then the affine map with c = 0x63
do
    local exp, log, x = {}, {}, 1
    for i = 0, 254 do exp[i], log[x] = x, i; x = bxor(x, xtime(x)) end -- generator x + 1
    for a = 0, 255 do
        local inv = a == 0 and 0 or exp[(255 - log[a]) % 255]
        local s = inv
        for k = 1, 4 do s = bxor(s, (inv * 2 ^ k) % 256 + math.floor(inv / 2 ^ (8 - k))) end
        SBOX[a] = bxor(s, 0x63)
    end
end

-- key expansion (FIPS-197 5.2): 11 round keys, 176 bytes, 1-based
local function aes_expand(key)
    local w, rcon = {}, 1
    for i = 1, 16 do w[i] = key[i] end
    for i = 17, 176, 4 do
        local t = { w[i - 4], w[i - 3], w[i - 2], w[i - 1] }
        if (i - 1) % 16 == 0 then -- SubWord(RotWord(t)) xor Rcon
            t = { bxor(SBOX[t[2]], rcon), SBOX[t[3]], SBOX[t[4]], SBOX[t[1]] }
            rcon = xtime(rcon)
        end
        for j = 0, 3 do w[i + j] = bxor(w[i + j - 16], t[j + 1]) end
    end
    return w
end

-- one block; the state is column-major, byte r + 4c at index r + 4c + 1 (FIPS-197 3.4)
local function aes_encrypt(rk, block)
    local s = {}
    for i = 1, 16 do s[i] = bxor(block[i], rk[i]) end
    for round = 1, 10 do
        local t = {}
        for c = 0, 3 do -- SubBytes and ShiftRows: row r moves left by r
            for r = 0, 3 do t[r + 4 * c + 1] = SBOX[s[r + 4 * ((c + r) % 4) + 1]] end
        end
        if round < 10 then -- MixColumns (FIPS-197 5.1.3)
            for c = 0, 12, 4 do
                local a0, a1, a2, a3 = t[c + 1], t[c + 2], t[c + 3], t[c + 4]
                local all = bxor(bxor(a0, a1), bxor(a2, a3))
                t[c + 1] = bxor(bxor(a0, all), xtime(bxor(a0, a1)))
                t[c + 2] = bxor(bxor(a1, all), xtime(bxor(a1, a2)))
                t[c + 3] = bxor(bxor(a2, all), xtime(bxor(a2, a3)))
                t[c + 4] = bxor(bxor(a3, all), xtime(bxor(a3, a0)))
            end
        end
        local o = 16 * round
        for i = 1, 16 do s[i] = bxor(t[i], rk[o + i]) end
    end
    return s
end

local function xor_into(acc, data, from) -- acc[1..16] ^= data[from..from+15] (zero past the end)
    for i = 1, 16 do acc[i] = bxor(acc[i], data[from + i - 1] or 0) end
end

-- CCM with a 13-byte nonce (q = 2 length bytes): the counter block A_i and the
-- CBC-MAC over B0 || encoded aad || message (SP 800-38C A.2)
local function ccm_counter(nonce, i)
    local a = { 1 } -- flags: q - 1
    for k = 1, #nonce do a[#a + 1] = nonce[k] end
    a[15], a[16] = math.floor(i / 256) % 256, i % 256
    return a
end

local function ccm_mac(rk, nonce, aad, msg, tag_len)
    local b = { (#aad > 0 and 64 or 0) + 8 * ((tag_len - 2) / 2) + 1 }
    for k = 1, #nonce do b[#b + 1] = nonce[k] end
    b[15], b[16] = math.floor(#msg / 256) % 256, #msg % 256
    local x = aes_encrypt(rk, b)
    if #aad > 0 then -- 2-byte length (aad < 2^16 - 2^8), the aad, zero padding
        local a = concat({ math.floor(#aad / 256), #aad % 256 }, aad)
        for off = 1, #a, 16 do xor_into(x, a, off); x = aes_encrypt(rk, x) end
    end
    for off = 1, #msg, 16 do xor_into(x, msg, off); x = aes_encrypt(rk, x) end
    return slice(x, 1, tag_len)
end

local function ccm_ctr(rk, nonce, data)
    local out = {}
    for off = 1, #data, 16 do
        local s = aes_encrypt(rk, ccm_counter(nonce, (off - 1) / 16 + 1))
        for k = 0, 15 do
            if data[off + k] == nil then break end
            out[off + k] = bxor(data[off + k], s[k + 1])
        end
    end
    return out
end

-- (plaintext, true) when the tag verifies, (nil, false) otherwise
local function ccm_open(key, nonce, ct, tag, aad)
    local rk = aes_expand(key)
    local plain = ccm_ctr(rk, nonce, ct)
    local t = ccm_mac(rk, nonce, aad, plain, #tag)
    local s0 = aes_encrypt(rk, ccm_counter(nonce, 0))
    for k = 1, #tag do t[k] = bxor(t[k], s0[k]) end
    if equal(t, tag) then return plain, true end
    return nil, false
end

-- the CCM nonce of osgp.security.aes_psk.AesPskProfile (INFERRED): flags (b0
-- direction, b1 broadcast) || address:6 || key id:2 BE || sequence number:4 BE
local function aes_nonce(direction, address, key_id, seq_bytes)
    local n = { direction % 2 }
    for i = 1, #address do n[#n + 1] = address[i] end
    n[#n + 1], n[#n + 2] = math.floor(key_id / 256) % 256, key_id % 256
    for i = 1, 4 do n[#n + 1] = seq_bytes[i] end
    return n
end

local function u32_bytes(v)
    return { math.floor(v / 16777216) % 256, math.floor(v / 65536) % 256, math.floor(v / 256) % 256, v % 256 }
end

for _, A in ipairs({ C.AES_PLC, C.AES_MEP }) do -- the generator's example, rebuilt here
    local e = A.nonce_example
    if #A.nonce_example_value ~= 2 * A.nonce_len or
       to_hex(aes_nonce(e[1], hex_bytes(e[2]), e[3], u32_bytes(e[4]))) ~= A.nonce_example_value then
        error("osgp: the AES nonce layout of this plugin differs from osgp's AesPskProfile")
    end
    A.request_seq = 0 -- the suite numbers its frames: no sequence number inside the message
end

-- the legacy suite per link: digest key and RC4 base key (osgp.security.legacy)
local SUITES = {
    PLC = {
        env = C.PLC,
        aes = C.AES_PLC,
        digest_key = function(k) return k end,
        base_key = function(k) -- INFERRED: EN14908 over OMAK bytes 0..5 (docs/protocol.md §2.4)
            local k6 = slice(k, 1, 6)
            return concat(en14908(hex_bytes(C.PLC.rc4_r1), {}, k6),
                          en14908(hex_bytes(C.PLC.rc4_r2), {}, k6))
        end,
    },
    MEP = {
        env = C.MEP,
        aes = C.AES_MEP,
        digest_key = function(k) return slice(k, 1, 16) end,
        base_key = function(k) -- MEP App. B: RC4(key[0:16]) over ConstKey
            return rc4_process(rc4_new(slice(k, 1, 16)), hex_bytes(C.MEP.const_key))
        end,
    },
}

local function key_fits(link, key)
    for _, n in ipairs(SUITES[link].env.key_sizes) do
        if #key == n then return true end
    end
    return false
end

---------------------------------------------------------------------------
-- names
---------------------------------------------------------------------------
local function table_label(id)
    local e = C.TABLES[id]
    if e then return e[1], e[2] end
    local base = id % C.IDS.PENDING
    local pending = id >= C.IDS.PENDING
    local name
    e = C.TABLES[base]
    if e then
        name = e[1]
    elseif base >= C.IDS.ET then
        name = string.format("ET%02d", base - C.IDS.ET)
    else
        name = string.format("BT%02d", base)
    end
    if pending then name = name .. " pending" end
    return name, e and e[2] or nil
end

local function proc_label(id)
    local e = C.PROCEDURES[id]
    if e then return e[1], e[2] end
    if id >= C.IDS.ET then return string.format("EP%02d", id - C.IDS.ET), nil end
    return string.format("BP%02d", id), nil
end

local function names_vs(map)
    local vs = {}
    for k, v in pairs(map) do vs[k] = v end
    return vs
end

local RESPONSE_VS = {}
for k, v in pairs(C.RESPONSE) do RESPONSE_VS[k] = v .. " (" .. C.RESPONSE_ABBR[k] .. ")" end

---------------------------------------------------------------------------
-- protocol, fields, expert info
---------------------------------------------------------------------------
local osgp = Proto("osgp", "Open Smart Grid Protocol")
local osgp_mep = Proto("osgp_mep", "OSGP MEP serial frame")

local PLC_ENV = " On power line " .. C.PLC.envelope_status .. ". On MEP " .. C.MEP.envelope_status .. "."
local PLC_FRAMING = " On power line " .. C.PLC.framing_status .. "."
local PROXY_ST = " " .. C.PLC.proxy_status .. "."
local AES_ST = " On power line " .. C.AES_PLC.envelope_status .. " (" .. C.AES_PLC.layout_status
    .. "). On MEP " .. C.AES_MEP.envelope_status .. "."

-- string fields through ProtoField.new, whose description argument every Wireshark 3.x/4.x takes
local function str_field(abbr, name, desc)
    return ProtoField.new(name, abbr, ftypes.STRING, nil, base.NONE, nil, desc)
end

local F = {
    link = str_field("osgp.link", "Link", "PLC (LonTalk APDU) or MEP (serial frame)"),
    msgtype = ProtoField.uint8("osgp.type", "Message type", base.DEC, { [0] = "request", [1] = "response" },
        nil, "Request (client to device) or response." .. PLC_FRAMING),
    request_code = ProtoField.uint8("osgp.request_code", "Request code", base.HEX, names_vs(C.REQUEST), nil,
        "OSGP request code (C12.18 service codes; docs/protocol.md §3.1)." .. PLC_FRAMING),
    response_code = ProtoField.uint8("osgp.response_code", "Response code", base.HEX, RESPONSE_VS, nil,
        "OSGP response code (ANSI C12.18 0x00-0x0A, OSGP 0x0B/0x0C; docs/protocol.md §3.1)." .. PLC_FRAMING),
    table = ProtoField.uint16("osgp.table", "Table", base.DEC, nil, nil,
        "Table id, big-endian: BTnn = nn, ETnn = 2048 + nn, pending image + 4096 (docs/protocol.md §1)"),
    table_number = ProtoField.uint16("osgp.table.number", "Table number", base.DEC, nil, 0x07FF),
    table_mfg = ProtoField.bool("osgp.table.mfg", "Manufacturer table (ET)", 16, nil, 0x0800),
    table_pending = ProtoField.bool("osgp.table.pending", "Pending image", 16, nil, 0x1000),
    table_name = str_field("osgp.table.name", "Table name", "Name from the CLC/TS 50586 catalogue (osgp.tables)"),
    offset = ProtoField.uint24("osgp.offset", "Offset", base.DEC, nil, nil, "Byte offset, 3 bytes big-endian"),
    count = ProtoField.uint16("osgp.count", "Count", base.DEC, nil, nil, "Data bytes, 2 bytes big-endian"),
    data = ProtoField.bytes("osgp.data", "Table data", base.NONE, "Table data, fields least significant byte first"),
    seq = ProtoField.uint32("osgp.seq", "Sequence number", base.DEC, nil, nil,
        "4-byte big-endian sequence number after the request arguments, covered by the digest." .. PLC_ENV),
    current_seq = ProtoField.uint32("osgp.current_seq", "Device's current sequence number", base.DEC, nil, nil,
        "0x0C response: the sequence number the device holds (MEP guide p.11, p.15)." .. PLC_ENV),
    digest = ProtoField.bytes("osgp.digest", "Digest", base.NONE,
        "8-byte OMA digest trailer (Annex E); a response digest runs over request || response." .. PLC_ENV),
    digest_status = ProtoField.uint8("osgp.digest.status", "Digest check", base.DEC,
        { [0] = "not checked (no key for this device)", [1] = "good", [2] = "bad",
          [3] = "zero trailer: 0x0B in clear (INFERRED)", [4] = "not checked (request not captured)" }),
    digest_expected = str_field("osgp.digest.expected", "Expected digest", "Digest under the first configured key (hex)"),
    encrypted = ProtoField.bool("osgp.encrypted", "RC4-encrypted", base.NONE, nil, nil,
        "Code through sequence number RC4-encrypted, digest in clear (MEP guide App. B). The PLC RC4 key derivation is INFERRED (docs/protocol.md §2.4)."),
    payload = ProtoField.bytes("osgp.payload", "Undecoded message body", base.NONE,
        "Not a known code: RC4-encrypted without a key, or malformed"),
    proc = ProtoField.uint16("osgp.proc", "Procedure", base.HEX, nil, nil,
        "BT07/BT08 procedure word, little-endian (docs/protocol.md §4.1)"),
    proc_number = ProtoField.uint16("osgp.proc.number", "Procedure number", base.DEC, nil, 0x07FF),
    proc_mfg = ProtoField.bool("osgp.proc.mfg", "Manufacturer procedure (EP)", 16, nil, 0x0800),
    proc_selector = ProtoField.uint16("osgp.proc.selector", "Response selector", base.DEC,
        names_vs(C.PROC_SELECTORS), 0xF000),
    proc_name = str_field("osgp.proc.name", "Procedure name", "Name from the CLC/TS 50586 catalogue (osgp.tables)"),
    psn = ProtoField.uint8("osgp.psn", "Procedure sequence number", base.DEC),
    proc_params = ProtoField.bytes("osgp.proc.params", "Procedure parameters"),
    proc_result = ProtoField.uint8("osgp.proc.result", "Procedure result", base.DEC, names_vs(C.PROC_RESULTS)),
    proc_data = ProtoField.bytes("osgp.proc.data", "Procedure response data"),
    proxy = ProtoField.uint8("osgp.proxy", "Proxy code", base.HEX,
        { [C.PROXY.code] = "proxy", [C.PROXY.fail] = "proxy failure" }, nil,
        "Annex G repeating." .. PROXY_ST),
    proxy_header = ProtoField.uint8("osgp.proxy.header", "Proxy header", base.HEX, nil, nil, PROXY_ST),
    proxy_count = ProtoField.uint8("osgp.proxy.count", "Repeaters listed", base.DEC, nil, 0x0F, PROXY_ST),
    proxy_uniform_src = ProtoField.bool("osgp.proxy.uniform_src", "Uniform by source", 8, nil, 0x10, PROXY_ST),
    proxy_all_agents = ProtoField.bool("osgp.proxy.all_agents", "All agents", 8, nil, 0x20, PROXY_ST),
    proxy_long_timer = ProtoField.bool("osgp.proxy.long_timer", "Long timer", 8, nil, 0x40, PROXY_ST),
    proxy_uniform_dest = ProtoField.bool("osgp.proxy.uniform_dest", "Uniform by destination", 8, nil, 0x80, PROXY_ST),
    repeater = str_field("osgp.proxy.repeater", "Repeater", "subnet/node of a repeater." .. PROXY_ST),
    repeater_subnet = ProtoField.uint8("osgp.proxy.repeater.subnet", "Subnet", base.DEC),
    repeater_node = ProtoField.uint8("osgp.proxy.repeater.node", "Node", base.DEC, nil, 0x7F),
    repeater_alt = ProtoField.bool("osgp.proxy.repeater.alt_path", "Alternate path", 8, nil, 0x80),
    txctrl_timer = ProtoField.uint8("osgp.proxy.txctrl.timer", "Transmit timer code", base.DEC, nil, 0x0F, PROXY_ST),
    txctrl_retries = ProtoField.uint8("osgp.proxy.txctrl.retries", "Retries", base.DEC, nil, 0xF0, PROXY_ST),
    sicb_mode = ProtoField.uint8("osgp.proxy.sicb.mode", "SICB mode", base.DEC, names_vs(C.PROXY_MODES), 0x03, PROXY_ST),
    sicb_service = ProtoField.uint8("osgp.proxy.sicb.service", "SICB service", base.DEC,
        { [0] = "ACKD", [1] = "UNACKD_RPT", [2] = "UNACKD", [3] = "REQUEST" }, 0x0C, PROXY_ST),
    sicb_alt = ProtoField.bool("osgp.proxy.sicb.alt_path", "SICB alternate path", 8, nil, 0x10, PROXY_ST),
    sicb_type = ProtoField.uint8("osgp.proxy.sicb.target_type", "Target address type", base.DEC,
        { [0] = "group", [1] = "subnet/node", [2] = "Neuron ID", [3] = "broadcast", [4] = "group (compact)",
          [5] = "node (source subnet)", [6] = "Neuron ID (subnet 0)", [7] = "node (own subnet)" }, 0xE0, PROXY_ST),
    agent_timer = ProtoField.uint8("osgp.proxy.agent.timer", "Agent transmit timer code", base.DEC, nil, 0x0F, PROXY_ST),
    agent_retries = ProtoField.uint8("osgp.proxy.agent.retries", "Agent retries", base.DEC, nil, 0xF0, PROXY_ST),
    alt_key_type = ProtoField.uint8("osgp.proxy.alt_key.type", "Alternate key type", base.DEC,
        { [0] = "48-bit", [1] = "OMA 96-bit" }, nil, PROXY_ST),
    alt_key = ProtoField.bytes("osgp.proxy.alt_key", "Alternate key delta", base.NONE, PROXY_ST),
    target = str_field("osgp.proxy.target", "Target", "Proxy target address." .. PROXY_ST),
    target_bytes = ProtoField.bytes("osgp.proxy.target.address", "Target address bytes", base.NONE, PROXY_ST),
    fail_count = ProtoField.uint8("osgp.proxy.fail_count", "Proxy count at the failing stage", base.DEC, nil, 0x0F, PROXY_ST),
    fail_stage = ProtoField.uint8("osgp.proxy.fail_stage", "Failing stage (1 = first repeater)", base.DEC, nil, nil,
        "Repeaters of the request + 1 - count (osgp.link.carrier)." .. PROXY_ST),
    response_in = ProtoField.framenum("osgp.response_in", "Response in", base.NONE, frametype.RESPONSE, 0,
        "The response to this request (same source/destination pair and transaction number)"),
    request_in = ProtoField.framenum("osgp.request_in", "Request in", base.NONE, frametype.REQUEST, 0,
        "The request this response answers"),
    response_time = ProtoField.relative_time("osgp.response_time", "Response time", "Time since the request"),
    mep_length = ProtoField.uint16("osgp.mep.length", "Length", base.DEC, nil, nil,
        "Bytes after the length field (MEP guide p.9). " .. C.MEP.framing_status),
    mep_alert = ProtoField.none("osgp.mep.alert", "Alert (zero length)", "MEP guide p.17"),
    suite = str_field("osgp.suite", "Security suite",
        "legacy (OMA digest, RC4) or OSGP-AES-128-PSK, by the key table or the preference osgp.suite"),
    aes_seq = ProtoField.uint32("osgp.aes.seq", "Frame sequence number", base.DEC, nil, nil,
        "OSGP-AES-128-PSK: 4 bytes big-endian in clear, authenticated as CCM associated data and "
        .. "the last 4 bytes of the nonce." .. AES_ST),
    aes_ciphertext = ProtoField.bytes("osgp.aes.ciphertext", "Ciphertext", base.NONE,
        "The CCM-encrypted OSGP message (code and arguments; no legacy trailer)." .. AES_ST),
    aes_tag = ProtoField.bytes("osgp.aes.tag", "CCM tag", base.NONE,
        "CCM authentication tag (RFC 3610, SP 800-38C) closing the frame." .. AES_ST),
    aes_tag_status = ProtoField.uint8("osgp.aes.tag.status", "Tag check", base.DEC,
        { [0] = "not checked (no key for this device)", [1] = "good", [2] = "bad",
          [3] = "not checked (request not captured)", [4] = "0x0B in clear: no tag (INFERRED)" }),
    -- generated byte strings as hex text: Wireshark 4.0's TreeItem.add takes a bytes
    -- field's value as a C string, which ends at the first zero byte
    aes_nonce = str_field("osgp.aes.nonce", "Nonce",
        "13-byte CCM nonce (hex), not on the wire: flags (b0 direction, b1 broadcast) || address:6 || "
        .. "key id:2 || sequence number:4." .. AES_ST),
    aes_direction = ProtoField.uint8("osgp.aes.direction", "Direction", base.DEC,
        { [C.AES_PLC.down] = "concentrator to device", [C.AES_PLC.up] = "device to concentrator" }, nil,
        "Nonce flags bit 0." .. AES_ST),
    aes_address = str_field("osgp.aes.address", "Nonce address",
        "The device's 6-byte address in the nonce (its Neuron ID, hex), from the key table." .. AES_ST),
    aes_key_id = ProtoField.uint16("osgp.aes.key_id", "Key id", base.DEC, nil, nil,
        "Key id in the nonce, from the key table: not sent in a unicast frame." .. AES_ST),
    event = str_field("osgp.event", "History log entry", "A BT74 entry, decoded with the device's BT71 "
        .. "read earlier in the capture ([OPT p.50-53])"),
    event_time = str_field("osgp.event.time", "Time", "HISTORY_TIME, LTIME_DATE (YY MM DD hh mm ss)"),
    event_number = ProtoField.uint16("osgp.event.number", "Event number", base.DEC),
    event_seq = ProtoField.uint16("osgp.event.seq", "Sequence number", base.DEC),
    event_user = ProtoField.uint16("osgp.event.user", "User id", base.DEC),
    event_code = ProtoField.uint16("osgp.event.code", "Event code", base.DEC, nil, 0x07FF,
        "TBL_PROC_NBR of HISTORY_CODE; standard codes in the ANSI C12.19 numbering, INFERRED for OSGP "
        .. "(osgp.tables.events)"),
    event_mfg = ProtoField.bool("osgp.event.mfg", "Manufacturer event", 16, nil, 0x0800),
    event_name = str_field("osgp.event.name", "Event name", "From osgp's event catalogue (osgp.tables.events)"),
    event_argument = ProtoField.bytes("osgp.event.argument", "Argument", base.NONE,
        "HISTORY_ARGUMENT, BT71 HIST_DATA_LENGTH bytes"),
    aes_request_seq = ProtoField.uint32("osgp.aes.request_seq", "Request sequence number", base.DEC, nil, nil,
        "A response also authenticates the sequence number of its request (associated data)." .. AES_ST),
}
local ordered = {}
for _, f in pairs(F) do ordered[#ordered + 1] = f end
osgp.fields = ordered

local E = {
    malformed = ProtoExpert.new("osgp.malformed", "Malformed OSGP message", expert.group.MALFORMED, expert.severity.ERROR),
    undecoded = ProtoExpert.new("osgp.undecoded", "Undecodable OSGP message", expert.group.UNDECODED, expert.severity.WARN),
    auth_failure = ProtoExpert.new("osgp.auth_failure", "Authentication failure (0x0B)", expert.group.RESPONSE_CODE, expert.severity.WARN),
    bad_sequence = ProtoExpert.new("osgp.bad_sequence", "Invalid sequence number (0x0C)", expert.group.SEQUENCE, expert.severity.WARN),
    error_response = ProtoExpert.new("osgp.error_response", "Error response", expert.group.RESPONSE_CODE, expert.severity.NOTE),
    proxy_failure = ProtoExpert.new("osgp.proxy_failure", "Proxy chain failure (0x4C)", expert.group.RESPONSE_CODE, expert.severity.WARN),
    digest_bad = ProtoExpert.new("osgp.digest_bad", "Digest does not verify", expert.group.CHECKSUM, expert.severity.WARN),
    proc_failed = ProtoExpert.new("osgp.proc_failed", "Procedure did not complete", expert.group.RESPONSE_CODE, expert.severity.NOTE),
    tag_bad = ProtoExpert.new("osgp.aes.tag_bad", "CCM tag does not verify", expert.group.DECRYPTION, expert.severity.WARN),
}
osgp.experts = { E.malformed, E.undecoded, E.auth_failure, E.bad_sequence, E.error_response,
                 E.proxy_failure, E.digest_bad, E.proc_failed, E.tag_bad }

osgp.prefs.keys_file = Pref.string("Key file", "",
    "UAT-format key file, one record per line: \"address\",\"key hex\"[,\"suite\",\"key id\",\"nonce address\"]. "
    .. "Address: subnet/node (\"2/5\"), a 12-digit Neuron ID, \"mep\" for MEP frames or \"*\" for any device. "
    .. "Suite: legacy (default) or aes (OSGP-AES-128-PSK, 16-byte key; key id and the device's 12-digit "
    .. "Neuron ID for the nonce). Empty: the osgp_keys file in the personal configuration folder.")
osgp.prefs.suite = Pref.enum("Suite without a key", 0,
    "How to read OSGP messages of devices without a key in the key file: legacy (OMA digest trailer) "
    .. "or OSGP-AES-128-PSK (sequence number, ciphertext, CCM tag)",
    { { "legacy", "Legacy (OMA digest, RC4)", 0 }, { "aes", "OSGP-AES-128-PSK", 1 } }, false)
osgp.prefs.mep_dlt = Pref.uint("MEP link type", 147,
    "pcap link type carrying MEP serial frames (147-162 = DLT_USER0-15; 0 = none)")
pcall(function() -- Wireshark versions with Lua UATs edit the same file in the GUI
    osgp.prefs.keys = Pref.uat("Keys", { { "address", "subnet/node, Neuron ID, mep or *" },
                                          { "key", "12-byte OMAK (PLC), 16-20-byte MEP key or AES key, hex" },
                                          { "suite", "legacy or aes" }, { "key_id", "AES key id" },
                                          { "nonce_address", "AES: the device's Neuron ID" } },
                               "Device keys for digest checks and RC4 decryption", "osgp_keys")
end)

---------------------------------------------------------------------------
-- keys (UAT text format: quoted fields separated by commas, \xNN escapes)
---------------------------------------------------------------------------
local KEYS = {}

local function address_key(s)
    s = s:gsub("%s", ""):lower()
    local sn, nd = s:match("^(%d+)/(%d+)$")
    if sn then return tonumber(sn) .. "/" .. tonumber(nd) end
    local nid = s:gsub(":", "")
    if nid:match("^%x+$") and #nid == 12 then return "nid:" .. nid end
    return s
end

local function load_keys()
    KEYS = {}
    local path = osgp.prefs.keys_file
    if path == nil or path == "" then path = Dir.personal_config_path("osgp_keys") end
    local f = io.open(path, "r")
    if not f then return end
    for line in f:lines() do
        if not line:match("^%s*#") then
            local fields = {}
            for q in line:gmatch('"(.-)"') do
                fields[#fields + 1] = q:gsub("\\x(%x%x)", function(h) return string.char(tonumber(h, 16)) end)
            end
            if #fields >= 2 then
                local hex = fields[2]:gsub("[%s:]", ""):lower()
                if hex:match("^%x+$") and #hex % 2 == 0 then
                    local addr = address_key(fields[1])
                    local rec = { key = hex_bytes(hex), aes = (fields[3] or ""):lower():match("^aes") ~= nil }
                    if rec.aes then
                        rec.key_id = tonumber(fields[4] or "", 10) or 0
                        local nid = (fields[5] or ""):gsub("[%s:]", ""):lower()
                        if #nid ~= 12 and addr:match("^nid:") then nid = addr:sub(5) end
                        rec.address = nid:match("^%x+$") and #nid == 12 and hex_bytes(nid) or hex_bytes("000000000000")
                    end
                    KEYS[addr] = KEYS[addr] or {}
                    table.insert(KEYS[addr], rec)
                end
            end
        end
    end
    f:close()
end

-- legacy keys (byte arrays) of a device, most specific first
local function keys_for(link, addr)
    local out = {}
    for _, a in ipairs({ addr or "", "*" }) do
        for _, r in ipairs(KEYS[a] or {}) do
            if not r.aes and key_fits(link, r.key) then out[#out + 1] = r.key end
        end
    end
    return out
end

-- OSGP-AES-128-PSK key records ({key, key_id, address}) of a device
local function aes_keys_for(addr)
    local out = {}
    for _, a in ipairs({ addr or "", "*" }) do
        for _, r in ipairs(KEYS[a] or {}) do
            if r.aes and #r.key == 16 then out[#out + 1] = r end
        end
    end
    return out
end

-- a device's messages use the AES suite: it has an AES key, or no key and the preference says so
local function uses_aes(link, addr)
    if #aes_keys_for(addr) > 0 then return true end
    return #keys_for(link, addr) == 0 and osgp.prefs.suite == 1
end

---------------------------------------------------------------------------
-- per-capture state: request/response pairing and what each request carried
---------------------------------------------------------------------------
local S

function osgp.init()
    S = { pending = {}, req_of = {}, resp_of = {}, answered = {}, repeat_of = {}, info = {},
          mep_kind = {}, mep_last = nil, logdims = {}, loghead = {}, logdims_at = {} }
    load_keys()
end


-- a response: the frame of its request (first pass pairs, later passes look up),
-- and the request whose keys and sequence number open it: the same, or for a
-- repeated answer of an exchange already paired, that exchange's request;
-- ``keys``: the exchange keys to try, most specific first
local function pair_response(pinfo, keys)
    local rq = S.req_of[pinfo.number]
    if rq == nil and not pinfo.visited then
        for _, key in ipairs(keys) do
            local cand = S.pending[key]
            if cand ~= nil and cand < pinfo.number then
                S.req_of[pinfo.number], S.resp_of[cand] = cand, pinfo.number
                S.pending[key], S.answered[key] = nil, cand
                return cand, cand
            end
        end
        for _, key in ipairs(keys) do
            if S.answered[key] then S.repeat_of[pinfo.number] = S.answered[key]; break end
        end
    end
    return rq, rq or S.repeat_of[pinfo.number]
end

local function note_request(pinfo, keys, info)
    if not pinfo.visited then
        for _, key in ipairs(keys) do S.pending[key] = pinfo.number end
        S.info[pinfo.number] = info
    end
end

local function add_pairing(tree, pinfo)
    local rs = S.resp_of[pinfo.number]
    if rs then tree:add(F.response_in, rs):set_generated() end
    local rq = S.req_of[pinfo.number]
    if rq then
        tree:add(F.request_in, rq):set_generated()
        local info = S.info[rq]
        if info and info.time then
            local d = pinfo.abs_ts - info.time
            local secs = math.floor(d)
            tree:add(F.response_time, NSTime.new(secs, math.floor((d - secs) * 1e9 + 0.5))):set_generated()
        end
    end
end

---------------------------------------------------------------------------
-- OSGP message bodies (docs/protocol.md §3.1, §4.1)
---------------------------------------------------------------------------
local function malformed(tree, pinfo, r, text)
    if r then tree:add_tvb_expert_info(E.malformed, r, text) else tree:add_proto_expert_info(E.malformed, text) end
    pinfo.cols.info:append(" [malformed]")
end

local function add_table(tree, r)
    local id = r:uint()
    local name, title = table_label(id)
    local t = tree:add(F.table, r)
    t:append_text(" (" .. name .. (title and (": " .. title) or "") .. ")")
    t:add(F.table_number, r)
    t:add(F.table_mfg, r)
    t:add(F.table_pending, r)
    tree:add(F.table_name, r, name):set_generated()
    return id, name
end

local function add_procedure_word(tree, r)
    local word = r:le_uint()
    local id = word % 4096
    local name, title = proc_label(id)
    local t = tree:add_le(F.proc, r)
    t:append_text(" (" .. name .. (title and (": " .. title) or "") .. ")")
    t:add_le(F.proc_number, r)
    t:add_le(F.proc_mfg, r)
    t:add_le(F.proc_selector, r)
    tree:add(F.proc_name, r, name):set_generated()
    return id, name
end

-- BT07 data: procedure:2 LE | PSN:1 | parameters
local function dissect_bt07(tvb, off, n, tree, pinfo)
    if n < 3 then return malformed(tree, pinfo, tvb(off, n), "BT07 write shorter than procedure + PSN") end
    local _, name = add_procedure_word(tree, tvb(off, 2))
    tree:add(F.psn, tvb(off + 2, 1))
    if n > 3 then tree:add(F.proc_params, tvb(off + 3, n - 3)) end
    pinfo.cols.info:append(string.format(" %s PSN %d", name, tvb(off + 2, 1):uint()))
end

-- BT08 data: procedure:2 LE | PSN:1 | result:1 | data
local function dissect_bt08(tvb, off, n, tree, pinfo)
    if n < 4 then return malformed(tree, pinfo, tvb(off, n), "BT08 data shorter than procedure + PSN + result") end
    local _, name = add_procedure_word(tree, tvb(off, 2))
    tree:add(F.psn, tvb(off + 2, 1))
    local res = tvb(off + 3, 1):uint()
    local it = tree:add(F.proc_result, tvb(off + 3, 1))
    if n > 4 then tree:add(F.proc_data, tvb(off + 4, n - 4)) end
    pinfo.cols.info:append(string.format(" %s PSN %d result %d", name, tvb(off + 2, 1):uint(), res))
    if res > 1 then it:add_proto_expert_info(E.proc_failed, "Procedure result " .. (C.PROC_RESULTS[res] or res)) end
end

-- request plaintext: code | args | seq  (tvb holds exactly that)
local function dissect_request_body(tvb, tree, pinfo, env, info)
    local n = tvb:len()
    local code = tvb(0, 1):uint()
    local sq = env.request_seq or env.seq_size
    tree:add(F.request_code, tvb(0, 1))
    local args = n - 1 - sq
    local want = ({ [0x30] = 2, [0x3F] = 7, [0x40] = 4, [0x4F] = 9 })[code]
    info.code = code
    pinfo.cols.info:set("OSGP " .. C.REQUEST[code])
    if args < want then
        return malformed(tree, pinfo, tvb(0, n), string.format("%s needs %d argument bytes, %d left",
            C.REQUEST[code], want, math.max(args, 0)))
    end
    local id, name = add_table(tree, tvb(1, 2))
    info.table, info.offset = id, 0
    local off = 3
    if code == 0x3F or code == 0x4F then
        tree:add(F.offset, tvb(3, 3))
        info.offset = tvb(3, 3):uint()
        off = 6
    end
    pinfo.cols.info:append(" " .. name)
    if code == 0x3F or code == 0x40 or code == 0x4F then
        local count = tvb(off, 2):uint()
        tree:add(F.count, tvb(off, 2))
        info.count = count
        off = off + 2
        if code == 0x3F then
            pinfo.cols.info:append(string.format(" offset %d count %d", info.offset, count))
            if args > want then malformed(tree, pinfo, tvb(off, args - want), "bytes after the count of a partial read") end
        else
            local data = n - sq - off
            if data ~= count then
                malformed(tree, pinfo, tvb(off, math.max(data, 0)),
                    string.format("count %d but %d data bytes", count, data))
            elseif data > 0 then
                pinfo.cols.info:append(string.format(" %d bytes", count))
                tree:add(F.data, tvb(off, data))
                if id == C.IDS.BT07 and info.offset == 0 then dissect_bt07(tvb, off, data, tree, pinfo) end
            end
            off = off + math.max(data, 0)
        end
    elseif args > want then
        malformed(tree, pinfo, tvb(off, args - want), "bytes after the table id of a full read")
    end
    if sq > 0 then
        tree:add(F.seq, tvb(n - sq, sq))
        pinfo.cols.info:append(string.format(" seq %d", tvb(n - sq, sq):uint()))
    end
end

---------------------------------------------------------------------------
-- BT71 / BT74 ([OPT p.50-53]; docs/protocol.md §7.8): history log entries
-- named from osgp.tables.events, once the device's BT71 was read in the capture
---------------------------------------------------------------------------
local BT71, BT74 = 71, 74
local BT74_HEADER = 11 -- HIST_FLAGS:1 NBR_VALID_ENTRIES:2 LAST_ENTRY_ELEMENT:2 LAST_ENTRY_SEQ_NBR:4 NBR_UNREAD_ENTRIES:2
local LTIME_DATE = 6 -- YY MM DD hh mm ss

local function bit_set(v, b) return math.floor(v / 2 ^ b) % 2 == 1 end

local function event_label(code, mfg)
    local name = (mfg and C.MFG_EVENTS or C.EVENTS)[code]
    return name or string.format("%s event %d", mfg and "mfg" or "std", code)
end

-- BT71 from offset 0: LOG_FLAGS:1 (b0 event number, b1 date and time, b2
-- sequence number), NBR_STD_EVENTS:1, NBR_MFG_EVENTS:1, HIST_DATA_LENGTH:1,
-- EVENT_DATA_LENGTH:1, NBR_HISTORY_ENTRIES:2
local function note_log_dims(tvb, off, count, pinfo, req)
    if req.offset == 0 and count >= 7 and not pinfo.visited then
        S.logdims[req.addr or ""] = { flags = tvb(off, 1):uint(), arg = tvb(off + 3, 1):uint(),
                                      entries = tvb(off + 5, 2):le_uint() }
    end
end

-- is entry k one of the NBR_VALID_ENTRIES ending at LAST_ENTRY_ELEMENT (circular,
-- HIST_FLAGS b0 ORDER: 1 descending)? True while the BT74 header is unknown.
local function entry_valid(head, dims, k)
    if head == nil or dims.entries == 0 then return true end
    local back = head.desc and (k - head.last) % dims.entries or (head.last - k) % dims.entries
    return back < head.nvalid
end

-- one entry (k) at p: [HISTORY_TIME] [EVENT_NUMBER] [HISTORY_SEQ_NBR] USER_ID:2
-- HISTORY_CODE:2 (b0-10 code, b11 manufacturer) HISTORY_ARGUMENT ([OPT p.51-53])
local function add_event(tree, tvb, p, size, dims, k)
    local et = tree:add(F.event, tvb(p, size), "")
    if bit_set(dims.flags, 1) then
        local b = range_bytes(tvb(p, LTIME_DATE))
        et:add(F.event_time, tvb(p, LTIME_DATE), string.format("%04d-%02d-%02d %02d:%02d:%02d",
            2000 + b[1], b[2], b[3], b[4], b[5], b[6]))
        p = p + LTIME_DATE
    end
    if bit_set(dims.flags, 0) then et:add_le(F.event_number, tvb(p, 2)); p = p + 2 end
    if bit_set(dims.flags, 2) then et:add_le(F.event_seq, tvb(p, 2)); p = p + 2 end
    et:add_le(F.event_user, tvb(p, 2))
    local word = tvb(p + 2, 2):le_uint()
    local name = event_label(word % 2048, bit_set(word, 11))
    et:add_le(F.event_code, tvb(p + 2, 2))
    et:add_le(F.event_mfg, tvb(p + 2, 2))
    et:add(F.event_name, tvb(p + 2, 2), name):set_generated()
    if dims.arg > 0 then et:add(F.event_argument, tvb(p + 4, dims.arg)) end
    et:set_text(string.format("History log entry %d: %s", k, name))
end

-- the valid entries of a BT74 read that lie wholly inside it
local function dissect_bt74(tvb, off, count, tree, pinfo, req)
    local dev = req.addr or ""
    local at = S.logdims_at[pinfo.number]
    if at == nil and not pinfo.visited then
        if req.offset == 0 and count >= 5 then -- HIST_FLAGS:1 NBR_VALID_ENTRIES:2 LAST_ENTRY_ELEMENT:2
            S.loghead[dev] = { desc = bit_set(tvb(off, 1):uint(), 0), nvalid = tvb(off + 1, 2):le_uint(),
                               last = tvb(off + 3, 2):le_uint() }
        end
        at = { dims = S.logdims[dev], head = S.loghead[dev] }
        S.logdims_at[pinfo.number] = at
    end
    local dims = at and at.dims
    if not dims then return end
    local fl = dims.flags
    local size = (bit_set(fl, 1) and LTIME_DATE or 0) + (bit_set(fl, 0) and 2 or 0)
        + (bit_set(fl, 2) and 2 or 0) + 4 + dims.arg
    local k = math.max(0, math.ceil((req.offset - BT74_HEADER) / size))
    while BT74_HEADER + (k + 1) * size <= req.offset + count do
        if entry_valid(at.head, dims, k) then
            add_event(tree, tvb, off + BT74_HEADER + k * size - req.offset, size, dims, k)
        end
        k = k + 1
    end
end

-- response plaintext: code | data  (tvb holds exactly that)
local function dissect_response_body(tvb, tree, pinfo, env, req)
    local n = tvb:len()
    local code = tvb(0, 1):uint()
    local it = tree:add(F.response_code, tvb(0, 1))
    pinfo.cols.info:set("OSGP response " .. C.RESPONSE[code])
    if code == 0 then
        if n == 1 then return end
        if n < 3 then return malformed(tree, pinfo, tvb(1, n - 1), "read response without a 2-byte count") end
        local count = tvb(1, 2):uint()
        tree:add(F.count, tvb(1, 2))
        if n - 3 ~= count then
            return malformed(tree, pinfo, tvb(3, n - 3), string.format("count %d but %d data bytes", count, n - 3))
        end
        if count > 0 then tree:add(F.data, tvb(3, count)) end
        pinfo.cols.info:append(string.format(" (%d bytes)", count))
        if req and req.table then
            local name = table_label(req.table)
            pinfo.cols.info:append(" " .. name)
            tree:add(F.table_name, name):set_generated()
            if req.code == 0x30 or req.code == 0x3F then
                if req.table == C.IDS.BT08 and req.offset == 0 then dissect_bt08(tvb, 3, count, tree, pinfo) end
                if req.table == BT71 then note_log_dims(tvb, 3, count, pinfo, req) end
                if req.table == BT74 then dissect_bt74(tvb, 3, count, tree, pinfo, req) end
            end
        end
        return
    end
    if code == C.IDS.INVALID_SEQUENCE then
        if n ~= 1 + env.seq_size then
            return malformed(tree, pinfo, tvb(0, n), "0x0C carries exactly the current sequence number")
        end
        tree:add(F.current_seq, tvb(1, env.seq_size))
        local cur = tvb(1, env.seq_size):uint()
        pinfo.cols.info:append(string.format(" (current %d)", cur))
        return it:add_proto_expert_info(E.bad_sequence, string.format("Invalid sequence number: device holds %d", cur))
    end
    if n > 1 then malformed(tree, pinfo, tvb(1, n - 1), "an error response carries no data") end
    if code == C.IDS.AUTH_FAILURE then
        it:add_proto_expert_info(E.auth_failure, "Authentication failure: the request's digest did not verify")
    else
        it:add_proto_expert_info(E.error_response, "Error response " .. C.RESPONSE[code] .. " (" .. C.RESPONSE_ABBR[code] .. ")")
    end
end

---------------------------------------------------------------------------
-- the legacy envelope: body | digest:8, with optional keys
---------------------------------------------------------------------------
local function digest_of(suite, key, msg)
    return oma_digest(suite.digest_key(key), msg)
end

-- request: finds (plain, encrypted, key, rc4 key) for the first key that verifies
local function open_request(suite, keys, body, digest)
    for _, k in ipairs(keys) do
        if equal(digest_of(suite, k, body), digest) then return body, false, k, nil end
        local mk = message_key(suite.base_key(k), digest)
        local plain = rc4_process(rc4_new(mk), body)
        if equal(digest_of(suite, k, plain), digest) then return plain, true, k, mk end
    end
    return nil
end

local function response_stream(suite, req, digest)
    if suite.env.continues_keystream then -- MEP: the request's keystream continues
        local st = rc4_new(req.rc4key)
        rc4_process(st, req.plain)
        return st
    end
    return rc4_new(message_key(suite.base_key(req.key), digest))
end

local function add_digest_status(tree, pinfo, r, status, expected)
    tree:add(F.digest_status, r, status):set_generated()
    if status == 2 then
        if expected then tree:add(F.digest_expected, r, to_hex(expected)):set_generated() end
        tree:add_tvb_expert_info(E.digest_bad, r, "Digest does not verify under the configured key")
    end
end

local function new_tvb(bytes, name)
    return ByteArray.new(to_hex(bytes)):tvb(name)
end

---------------------------------------------------------------------------
-- the OSGP-AES-128-PSK envelope, INFERRED (osgp.security.aes_suite; docs/protocol.md
-- §5.3): seq:4 BE | CCM ciphertext | tag; the key id and address sit in the nonce only
---------------------------------------------------------------------------
local function aes_frame(tvb, tree, pinfo, A)
    local n = tvb:len()
    if n < A.seq_size + A.tag_len then
        malformed(tree, pinfo, tvb(0, n), string.format(
            "OSGP-AES-128-PSK frame of %d bytes: %d-byte sequence number and %d-byte tag need %d",
            n, A.seq_size, A.tag_len, A.seq_size + A.tag_len))
        return nil
    end
    local clen = n - A.seq_size - A.tag_len
    local f = { seq = range_bytes(tvb(0, A.seq_size)), seqv = tvb(0, A.seq_size):uint(), ct = {} }
    tree:add(F.aes_seq, tvb(0, A.seq_size))
    if clen > 0 then
        tree:add(F.aes_ciphertext, tvb(A.seq_size, clen))
        f.ct = range_bytes(tvb(A.seq_size, clen))
    end
    f.tag_range = tvb(n - A.tag_len, A.tag_len)
    f.tag = range_bytes(f.tag_range)
    tree:add(F.aes_tag, f.tag_range)
    return f
end

-- the first record whose key opens the frame: (plaintext, record, nonce), or (nil, first record, its nonce)
local function aes_open(recs, first, direction, f, aad)
    local order = {}
    if first then order[1] = first end
    for _, r in ipairs(recs) do if r ~= first then order[#order + 1] = r end end
    for _, r in ipairs(order) do
        local nonce = aes_nonce(direction, r.address, r.key_id, f.seq)
        local plain, ok = ccm_open(r.key, nonce, f.ct, f.tag, aad)
        if ok then return plain, r, nonce end
    end
    local r = order[1]
    return nil, r, r and aes_nonce(direction, r.address, r.key_id, f.seq)
end

local function add_aes_params(tree, f, direction, rec, nonce, status)
    local r = f.tag_range
    tree:add(F.aes_direction, r, direction):set_generated()
    if rec then
        tree:add(F.aes_address, r, to_hex(rec.address)):set_generated()
        tree:add(F.aes_key_id, r, rec.key_id):set_generated()
        tree:add(F.aes_nonce, r, to_hex(nonce)):set_generated()
    end
    tree:add(F.aes_tag_status, r, status):set_generated()
    if status == 2 then
        tree:add_tvb_expert_info(E.tag_bad, r, "CCM tag does not verify under the configured key")
    end
end

local function aes_undecoded(tree, pinfo, f, status)
    pinfo.cols.info:append(" (encrypted)")
    if status ~= 1 then
        tree:add_tvb_expert_info(E.undecoded, f.tag_range, ({
            [0] = "OSGP-AES-128-PSK frame: no key for this device",
            [2] = "OSGP-AES-128-PSK frame not decrypted: no key verifies its tag",
            [3] = "OSGP-AES-128-PSK response not decrypted: its request (bound as associated data) was not captured",
        })[status])
    end
end

local function dissect_aes_request(tvb, tree, pinfo, link, addr, info)
    local A = SUITES[link].aes
    tree:add(F.suite, A.suite):set_generated()
    pinfo.cols.info:set("OSGP-AES request")
    info.aes = true
    local f = aes_frame(tvb, tree, pinfo, A)
    if f == nil then return end
    info.aes_seq = f.seq
    local recs = aes_keys_for(addr)
    local plain, rec, nonce = aes_open(recs, nil, A.down, f, concat(hex_bytes(A.request_aad), f.seq))
    local status = plain and 1 or (#recs > 0 and 2 or 0)
    add_aes_params(tree, f, A.down, rec, nonce, status)
    info.aes_key = plain and rec or nil
    if plain == nil then return aes_undecoded(tree, pinfo, f, status) end
    if #plain == 0 or not C.REQUEST[plain[1]] then
        return malformed(tree, pinfo, nil, "the decrypted message is not an OSGP request")
    end
    dissect_request_body(new_tvb(plain, "Decrypted OSGP-AES request"), tree, pinfo, A, info)
    pinfo.cols.info:append(string.format(" frame seq %d", f.seqv))
end

local function dissect_aes_response(tvb, tree, pinfo, link, addr, req)
    local A = SUITES[link].aes
    tree:add(F.suite, A.suite):set_generated()
    pinfo.cols.info:set("OSGP-AES response")
    if A.auth_failure_in_clear and tvb:len() == 1 and tvb(0, 1):uint() == C.IDS.AUTH_FAILURE then
        tree:add(F.aes_tag_status, tvb(0, 1), 4):set_generated()
        return dissect_response_body(tvb, tree, pinfo, A, req)
    end
    local f = aes_frame(tvb, tree, pinfo, A)
    if f == nil then return end
    local recs = aes_keys_for(addr)
    local plain, rec, nonce, status = nil, nil, nil, 0
    if req and req.aes_seq then
        local rs = req.aes_seq
        tree:add(F.aes_request_seq, f.tag_range, rs[1] * 16777216 + rs[2] * 65536 + rs[3] * 256 + rs[4]):set_generated()
        local aad = concat(hex_bytes(A.request_aad), A.bind_response and concat(rs, f.seq) or f.seq)
        plain, rec, nonce = aes_open(recs, req.aes_key, A.up, f, aad)
        status = plain and 1 or (rec and 2 or 0)
    elseif #recs > 0 then -- the associated data holds the request's number: not checkable
        rec, status = recs[1], 3
        nonce = aes_nonce(A.up, rec.address, rec.key_id, f.seq)
    end
    add_aes_params(tree, f, A.up, rec, nonce, status)
    if plain == nil then return aes_undecoded(tree, pinfo, f, status) end
    if #plain == 0 or not C.RESPONSE[plain[1]] then
        return malformed(tree, pinfo, nil, "the decrypted message is not an OSGP response")
    end
    dissect_response_body(new_tvb(plain, "Decrypted OSGP-AES response"), tree, pinfo, A, req)
    pinfo.cols.info:append(string.format(" frame seq %d", f.seqv))
end

local function dissect_request(tvb, tree, pinfo, link, addr, info)
    if uses_aes(link, addr) then return dissect_aes_request(tvb, tree, pinfo, link, addr, info) end
    tree:add(F.suite, "legacy"):set_generated()
    local suite = SUITES[link]
    local env = suite.env
    local n = tvb:len()
    if n < 1 + env.seq_size + env.digest_size then
        pinfo.cols.info:set("OSGP request")
        return malformed(tree, pinfo, tvb(0, n), string.format(
            "request of %d bytes: code, %d-byte sequence number and %d-byte digest need %d",
            n, env.seq_size, env.digest_size, 1 + env.seq_size + env.digest_size))
    end
    local blen = n - env.digest_size
    local body, digest = range_bytes(tvb(0, blen)), range_bytes(tvb(blen, env.digest_size))
    local known = C.REQUEST[body[1]] ~= nil
    local keys = keys_for(link, addr)
    local plain, encrypted, key, mk = open_request(suite, keys, body, digest)
    local btvb = tvb(0, blen):tvb()
    if plain and encrypted then btvb = new_tvb(plain, "Decrypted OSGP request") end
    tree:add(F.encrypted, plain ~= nil and encrypted or false):set_generated()
    info.plain = plain or body
    info.encrypted, info.key, info.rc4key, info.link = encrypted, key, mk, link
    if plain or known then
        dissect_request_body(btvb, tree, pinfo, env, info)
    else
        tree:add(F.payload, tvb(0, blen))
        pinfo.cols.info:set("OSGP request (undecoded)")
        tree:add_tvb_expert_info(E.undecoded, tvb(0, 1), string.format(
            "0x%02X is not a request code: RC4-encrypted without a matching key, or malformed", body[1]))
    end
    local dr = tvb(blen, env.digest_size)
    tree:add(F.digest, dr)
    if plain then
        add_digest_status(tree, pinfo, dr, 1)
    elseif #keys > 0 then
        add_digest_status(tree, pinfo, dr, 2, digest_of(suite, keys[1], body))
    else
        add_digest_status(tree, pinfo, dr, 0)
    end
end

local function dissect_response(tvb, tree, pinfo, link, addr, req)
    if (req and req.aes) or (req == nil and uses_aes(link, addr)) then
        return dissect_aes_response(tvb, tree, pinfo, link, addr, req)
    end
    tree:add(F.suite, "legacy"):set_generated()
    local suite = SUITES[link]
    local env = suite.env
    local n = tvb:len()
    if n < 1 + env.digest_size then
        pinfo.cols.info:set("OSGP response")
        return malformed(tree, pinfo, tvb(0, n), string.format(
            "response of %d bytes: code and %d-byte digest need %d", n, env.digest_size, 1 + env.digest_size))
    end
    local blen = n - env.digest_size
    local body, digest = range_bytes(tvb(0, blen)), range_bytes(tvb(blen, env.digest_size))
    local dr = tvb(blen, env.digest_size)
    local clear_0b = env.auth_failure_in_clear and blen == 1 and body[1] == C.IDS.AUTH_FAILURE
    local status, plain, expected = 0, nil, nil
    if req == nil and #keys_for(link, addr) > 0 then status = 4 end
    local key = req and req.key
    if key == nil and req and #keys_for(link, req.addr) > 0 then
        status = 2 -- keys exist but none verified the request: the response cannot chain
    end
    if key then
        local covered_prefix = env.chain_response and req.plain or {}
        local want = digest_of(suite, key, concat(covered_prefix, body))
        if equal(want, digest) then
            plain, status = body, 1
        else
            local cand = rc4_process(response_stream(suite, req, digest), body)
            if (req.encrypted or not C.RESPONSE[body[1]]) and
               equal(digest_of(suite, key, concat(covered_prefix, cand)), digest) then
                plain, status = cand, 1
            else
                status, expected = 2, want
            end
        end
    end
    if clear_0b and status ~= 1 then
        plain = body
        status = all_zero(digest) and 3 or status
        if status == 2 then status = 3 end -- 0x0B's trailer is not checked (INFERRED)
    end
    local encrypted = plain ~= nil and not equal(plain, body)
    tree:add(F.encrypted, encrypted):set_generated()
    local btvb = tvb(0, blen):tvb()
    if encrypted then btvb = new_tvb(plain, "Decrypted OSGP response") end
    if plain or C.RESPONSE[body[1]] then
        dissect_response_body(btvb, tree, pinfo, env, req)
    else
        tree:add(F.payload, tvb(0, blen))
        pinfo.cols.info:set("OSGP response (undecoded)")
        tree:add_tvb_expert_info(E.undecoded, tvb(0, 1), string.format(
            "0x%02X is not a response code: RC4-encrypted without a matching key, or malformed", body[1]))
    end
    tree:add(F.digest, dr)
    add_digest_status(tree, pinfo, dr, status, expected)
end

---------------------------------------------------------------------------
-- Annex G proxy (LonTalk Enhanced Proxy layout, lcs_proxy.c; docs/protocol.md §6.3)
---------------------------------------------------------------------------
local function target_string(ttype, tvb, off, len)
    local b = range_bytes(tvb(off, len))
    if ttype == 1 then return string.format("%d/%d", b[1], b[2] % 128), string.format("%d/%d", b[1], b[2] % 128) end
    if ttype == 2 then return string.format("%d/nid %s", b[1], to_hex(slice(b, 2, 7))), "nid:" .. to_hex(slice(b, 2, 7)) end
    if ttype == 6 then return "nid " .. to_hex(b), "nid:" .. to_hex(b) end
    if ttype == 0 or ttype == 4 then return string.format("group %d", b[1]), "group:" .. b[1] end
    if ttype == 3 then return string.format("broadcast subnet %d", b[1]), "bcast:" .. b[1] end
    return string.format("node %d", b[1] % 128), nil
end

-- 0x4D request: returns (offset of the target APDU, target address key, repeaters) or nil
local function dissect_proxy_request(tvb, tree, pinfo)
    local n = tvb:len()
    local pt = tree:add(F.proxy, tvb(0, 1))
    if n < 2 then malformed(pt, pinfo, tvb(0, n), "proxy frame without a header"); return nil end
    local h = tvb(1, 1):uint()
    local ht = pt:add(F.proxy_header, tvb(1, 1))
    for _, f in ipairs({ F.proxy_count, F.proxy_uniform_src, F.proxy_all_agents, F.proxy_long_timer,
                          F.proxy_uniform_dest }) do ht:add(f, tvb(1, 1)) end
    local count = h % 16
    local uniform = h >= 0x80 or math.floor(h / 16) % 2 == 1
    local per = uniform and 1 or 2
    local off = 2
    local need = off + count * per + (count > 0 and 1 or 0) + 2
    if n < need then malformed(pt, pinfo, tvb(0, n), "proxy frame shorter than its repeater list and SICB"); return nil end
    for _ = 1, count do
        local sub = uniform and nil or tvb(off, 1):uint()
        local nb = tvb(off + per - 1, 1):uint()
        local label = sub and string.format("%d/%d", sub, nb % 128) or string.format("node %d", nb % 128)
        local rt = pt:add(F.repeater, tvb(off, per), label)
        if sub then rt:add(F.repeater_subnet, tvb(off, 1)) end
        rt:add(F.repeater_node, tvb(off + per - 1, 1))
        rt:add(F.repeater_alt, tvb(off + per - 1, 1))
        off = off + per
    end
    if count > 0 then
        pt:add(F.txctrl_timer, tvb(off, 1))
        pt:add(F.txctrl_retries, tvb(off, 1))
        off = off + 1
    end
    local s0 = tvb(off, 1):uint()
    for _, f in ipairs({ F.sicb_mode, F.sicb_service, F.sicb_alt, F.sicb_type }) do pt:add(f, tvb(off, 1)) end
    pt:add(F.agent_timer, tvb(off + 1, 1))
    pt:add(F.agent_retries, tvb(off + 1, 1))
    off = off + 2
    if s0 % 4 == C.PROXY.mode_alt_key then
        if n < off + 1 then malformed(pt, pinfo, nil, "alternate key type missing"); return nil end
        local kt = tvb(off, 1):uint()
        pt:add(F.alt_key_type, tvb(off, 1))
        if kt > 1 then malformed(pt, pinfo, tvb(off, 1), "alternate key type " .. kt .. " undefined"); return nil end
        local klen = kt == 0 and 6 or 12
        if n < off + 1 + klen then malformed(pt, pinfo, nil, "alternate key truncated"); return nil end
        pt:add(F.alt_key, tvb(off + 1, klen))
        off = off + 1 + klen
    end
    local ttype = math.floor(s0 / 32)
    local tlen = C.PROXY_TARGET_LEN[ttype]
    if n < off + tlen then malformed(pt, pinfo, nil, "proxy target address truncated"); return nil end
    local label, key = target_string(ttype, tvb, off, tlen)
    local tt = pt:add(F.target, tvb(off, tlen), label)
    tt:add(F.target_bytes, tvb(off, tlen))
    off = off + tlen
    if n - off < 1 then malformed(pt, pinfo, nil, "proxy frame has no target APDU"); return nil end
    if n - off > C.PROXY.max_data then
        malformed(pt, pinfo, tvb(off, n - off), "target APDU longer than " .. C.PROXY.max_data .. " bytes")
    end
    pt:append_text(string.format(": %d repeater(s), target %s", count, label))
    return off, key, count
end

---------------------------------------------------------------------------
-- power line: behind Wireshark's lon dissector on CN/IP
---------------------------------------------------------------------------
local DOMAIN_LEN = { [0] = 0, [1] = 1, [2] = 3, [3] = 6 } -- ISO/IEC 14908-1 (docs/protocol.md §6.1)

-- LonTalk header (docs/protocol.md §6.1): nil when this is no OSGP carrier
local function parse_lon(tvb)
    local n = tvb:len()
    if n < 5 then return nil end
    local b0 = tvb(1, 1):uint()
    if math.floor(b0 / 64) ~= 0 then return nil end
    local pdufmt, addrfmt, dom = math.floor(b0 / 16) % 4, math.floor(b0 / 4) % 4, DOMAIN_LEN[b0 % 4]
    local h = { src = string.format("%d/%d", tvb(2, 1):uint(), tvb(3, 1):uint() % 128) }
    local sel = tvb(3, 1):uint() >= 128
    local off = 4
    if addrfmt == 0 then
        h.dst, off = "bcast:" .. tvb(4, 1):uint(), 5
    elseif addrfmt == 1 then
        h.dst, off = "group:" .. tvb(4, 1):uint(), 5
    elseif sel then
        if n < 6 then return nil end
        h.dst, off = string.format("%d/%d", tvb(4, 1):uint(), tvb(5, 1):uint() % 128), 6
    else
        if n < 8 then return nil end
        h.dst, off = string.format("%d/%d", tvb(4, 1):uint(), tvb(5, 1):uint() % 128), 8
    end
    if addrfmt == 3 then
        if n < 11 then return nil end
        h.dst, off = "nid:" .. tvb(5, 6):bytes():tohex():lower(), 11
    end
    off = off + dom
    if pdufmt ~= C.PLC.pdu_spdu or n < off + 2 then return nil end
    local sp = tvb(off, 1):uint()
    h.type, h.trans = math.floor(sp / 16) % 8, sp % 16
    off = off + 1
    if h.type == 4 or h.type == 5 then return nil end -- REMINDER: no OSGP message
    h.apdu = off
    return h
end

local lon_handle = DissectorTable.get("cnip.protocol"):get_dissector(0)

local function dissect_plc(tvb, pinfo, tree)
    local h = parse_lon(tvb)
    if h == nil then return end
    local request = h.type == C.PLC.service_request
    if not request and h.type ~= C.PLC.service_response then return end
    local atvb = tvb(h.apdu):tvb()
    local n = atvb:len()
    pinfo.cols.protocol = "OSGP"
    local t = tree:add(osgp, tvb(h.apdu, n))
    t:add(F.link, "PLC"):set_generated()
    t:add(F.msgtype, request and 0 or 1):set_generated()
    local off, addr = 0, h.dst
    -- an exchange: requester, responder, transaction number (ISO/IEC 14908-1
    -- request/response service); a request to a Neuron ID, group or broadcast
    -- address is answered from a subnet/node, so it pairs by requester and
    -- transaction number alone
    local key
    if request then
        key = { h.src .. ">" .. h.dst .. "#" .. h.trans }
        if not h.dst:match("^%d+/%d+$") then key[2] = h.src .. "#" .. h.trans end
    else
        key = { h.dst .. ">" .. h.src .. "#" .. h.trans, h.dst .. "#" .. h.trans }
    end
    local code = atvb(0, 1):uint()
    if request then
        local info = { time = pinfo.abs_ts, addr = addr }
        if code == C.PROXY.code then
            local o, target, count = dissect_proxy_request(atvb, t, pinfo)
            if o == nil then note_request(pinfo, key, info); add_pairing(t, pinfo); return end
            off, addr, info.addr, info.repeaters = o, target, target, count
        end
        if C.PLC.message_code then
            if atvb(off, 1):uint() ~= C.PLC.message_code then
                return malformed(t, pinfo, atvb(off, 1), "not the OSGP message code")
            end
            off = off + 1
        end
        note_request(pinfo, key, info)
        add_pairing(t, pinfo)
        if n - off < 1 then return malformed(t, pinfo, nil, "no OSGP message") end
        dissect_request(atvb(off):tvb(), t, pinfo, "PLC", addr, info)
        if info.repeaters then pinfo.cols.info:append(string.format(" (proxy, %d repeater(s))", info.repeaters)) end
        return
    end
    local _, opener = pair_response(pinfo, key)
    local req = opener and S.info[opener]
    add_pairing(t, pinfo)
    if req then addr = req.addr end
    if code == C.PROXY.code or code == C.PROXY.fail then
        local pt = t:add(F.proxy, atvb(0, 1))
        if code == C.PROXY.fail then
            pinfo.cols.info:set("OSGP proxy failure")
            if n ~= 2 then return malformed(pt, pinfo, atvb(0, n), "0x4C carries exactly one count byte") end
            local c = atvb(1, 1):uint() % 16
            pt:add(F.fail_count, atvb(1, 1))
            local text = string.format("Proxy chain failed (count %d)", c)
            if req and req.repeaters then
                local stage = req.repeaters + 1 - c
                pt:add(F.fail_stage, stage):set_generated()
                text = string.format("Proxy chain failed at stage %d (count %d)", stage, c)
            end
            pinfo.cols.info:append(string.format(" count %d", c))
            return pt:add_proto_expert_info(E.proxy_failure, text)
        end
        off = 1
    end
    if C.PLC.message_code then
        if n - off < 1 or atvb(off, 1):uint() ~= C.PLC.message_code then
            return malformed(t, pinfo, nil, "not the OSGP message code")
        end
        off = off + 1
    end
    if n - off < 1 then return malformed(t, pinfo, nil, "no OSGP message after the proxy code") end
    dissect_response(atvb(off):tvb(), t, pinfo, "PLC", addr, req)
    if off > 0 and code == C.PROXY.code then pinfo.cols.info:append(" (proxied)") end
end

function osgp.dissector(tvb, pinfo, tree)
    if lon_handle then lon_handle:call(tvb, pinfo, tree) end
    local ok, err = pcall(dissect_plc, tvb, pinfo, tree)
    if not ok then
        tree:add(osgp, tvb()):add_proto_expert_info(E.malformed, "OSGP decode stopped: " .. tostring(err))
    end
    return tvb:len()
end

DissectorTable.get("cnip.protocol"):add(0, osgp)

---------------------------------------------------------------------------
-- MEP serial frames: len:2 BE | message (MEP guide p.9-11) on a DLT_USER link type
---------------------------------------------------------------------------
local function dissect_mep_message(tvb, tree, pinfo)
    local code = tvb(0, 1):uint()
    local request
    local aes = uses_aes("MEP", "mep")
    if aes and tvb:len() == 1 and code == C.IDS.AUTH_FAILURE then
        request = false -- 0x0B in clear
    elseif not aes and C.REQUEST[code] then
        request = true
    elseif not aes and C.RESPONSE[code] then
        request = false
    else -- encrypted: requests and responses alternate on the serial line
        request = S.mep_kind[pinfo.number]
        if request == nil then request = S.mep_last ~= true end
    end
    if not pinfo.visited then S.mep_kind[pinfo.number], S.mep_last = request, request end
    tree:add(F.msgtype, request and 0 or 1):set_generated()
    if request then
        local info = { time = pinfo.abs_ts, addr = "mep" }
        note_request(pinfo, { "mep" }, info)
        add_pairing(tree, pinfo)
        dissect_request(tvb, tree, pinfo, "MEP", "mep", info)
    else
        local rq = pair_response(pinfo, { "mep" })
        add_pairing(tree, pinfo)
        dissect_response(tvb, tree, pinfo, "MEP", "mep", rq and S.info[rq])
    end
end

local function dissect_mep(tvb, pinfo, tree)
    local off, total = 0, tvb:len()
    while off < total do
        if total - off < C.MEP.length_size then
            return malformed(tree:add(osgp, tvb(off)), pinfo, tvb(off), "MEP frame shorter than its length field")
        end
        local len = tvb(off, 2):uint()
        local avail = math.min(len, total - off - 2)
        local t = tree:add(osgp, tvb(off, 2 + avail))
        t:add(F.link, "MEP"):set_generated()
        t:add(F.mep_length, tvb(off, 2))
        if len == 0 then
            t:add(F.mep_alert, tvb(off, 2))
            pinfo.cols.info:set("OSGP MEP alert")
        elseif len > C.MEP.max_message then
            return malformed(t, pinfo, tvb(off, 2), string.format("length %d exceeds %d", len, C.MEP.max_message))
        elseif avail < len then
            return malformed(t, pinfo, tvb(off), string.format("frame of %d bytes, %d captured", len, avail))
        else
            dissect_mep_message(tvb(off + 2, len):tvb(), t, pinfo)
        end
        off = off + 2 + len
    end
end

function osgp_mep.dissector(tvb, pinfo, tree)
    pinfo.cols.protocol = "OSGP-MEP"
    local ok, err = pcall(dissect_mep, tvb, pinfo, tree)
    if not ok then
        tree:add(osgp, tvb()):add_proto_expert_info(E.malformed, "OSGP decode stopped: " .. tostring(err))
    end
    return tvb:len()
end

-- DLT_USERn link types map onto consecutive Wireshark encapsulations
local DLT_USER0 = 147
local mep_encap = nil

local function register_mep()
    local tab = DissectorTable.get("wtap_encap")
    if mep_encap then tab:remove(mep_encap, osgp_mep); mep_encap = nil end
    local dlt = osgp.prefs.mep_dlt
    if dlt >= DLT_USER0 and dlt <= DLT_USER0 + 15 then
        mep_encap = wtap.USER0 + (dlt - DLT_USER0)
        tab:add(mep_encap, osgp_mep)
    end
end

register_mep()

function osgp.prefs_changed()
    load_keys()
    register_mep()
end
