// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * TOE rx parser: turns the byte stream of an rx packet into frame records, one per whole frame,
 * truncated frame or skipped run of garbage (riskgw/card/regmap.py, riskgw/gateway/protocol.py).
 *
 * Bytes wait in a shift buffer of MAX_FRAME_BYTES + DATA_W/8 bytes, byte 0 the oldest; each byte
 * carries the cycle stamp of the beat that brought it.  Every cycle the head of the buffer is
 * examined:
 *
 *   head holds a plausible header (known type, version, that type's length):
 *     garbage skipped before it  -> garbage record (proto, seq 0), the header stays
 *     whole frame in the buffer  -> frame record, the frame leaves the buffer
 *     packet ended short of it   -> truncated record (proto, the header's seq), the rest leaves
 *   8 or more bytes and no plausible header, or the packet's last < 8 bytes:
 *     the bytes are skipped as garbage (one per cycle, the short tail at once), as FrameReader
 *   the packet ended and nothing is left -> a pending garbage record, then the next packet
 *
 * A new packet enters only once the previous one has left the buffer entirely, so the session
 * (tuser) is one register.  A 64-byte NEW_ORDER that arrives in one beat leaves as a record the
 * cycle after that beat.
 *
 * Record (m_*): | proto | type | session | seq | stamp (rx cycle[31:0] of its first byte) |
 *               | order_id, account_id (0 unless a whole frame that has them) | frame bytes |
 * proto: a garbage run, a truncated frame, or a whole frame of a type the card does not run.
 */
module rgw_card_rx #(
    // TOE stream data width in bits (a multiple of 64)
    parameter int DATA_W = 64,
    // session id (tuser) width
    parameter int SESSION_W = 16
) (
    input  wire logic                          clk,
    input  wire logic                          rst,

    // take rx bytes (when clear the stream is back-pressured)
    input  wire logic                          enable,
    // free-running cycle counter, the stamp of each beat
    input  wire logic [31:0]                   cycle,

    input  wire logic [DATA_W-1:0]             s_axis_tdata,
    input  wire logic [DATA_W/8-1:0]           s_axis_tkeep,
    input  wire logic                          s_axis_tvalid,
    output wire logic                          s_axis_tready,
    input  wire logic                          s_axis_tlast,
    input  wire logic [SESSION_W-1:0]          s_axis_tuser,

    output wire logic                          m_valid,
    input  wire logic                          m_ready,
    output wire logic                          m_proto,
    output wire logic [7:0]                    m_type,
    output wire logic [SESSION_W-1:0]          m_session,
    output wire logic [31:0]                   m_seq,
    output wire logic [31:0]                   m_stamp,
    output wire logic [63:0]                   m_order_id,
    output wire logic [31:0]                   m_account_id,
    output wire logic [rgw_proto_pkg::MAX_FRAME_BYTES*8-1:0] m_frame,
    // a whole frame (of any type) left the buffer this cycle
    output wire logic                          rx_frame
);

import rgw_proto_pkg::*;

localparam int DB = DATA_W / 8;
localparam int FB = MAX_FRAME_BYTES;
localparam int BUF = FB + DB;
localparam int CL_BUF = $clog2(BUF + 1);

initial begin
    if (DATA_W % 64 != 0 || DATA_W < 64) $fatal(1, "rgw_card_rx: DATA_W must be a multiple of 64");
end

// bytes of a frame of this type, 0 when the type is unknown
function automatic logic [15:0] frame_bytes(input logic [7:0] t);
    case (t)
        MSG_LOGON: frame_bytes = 16'(LOGON_BYTES);
        MSG_LOGON_ACK: frame_bytes = 16'(LOGON_ACK_BYTES);
        MSG_LOGOUT: frame_bytes = 16'(LOGOUT_BYTES);
        MSG_HEARTBEAT: frame_bytes = 16'(HEARTBEAT_BYTES);
        MSG_NEW_ORDER: frame_bytes = 16'(NEW_ORDER_BYTES);
        MSG_CANCEL_REQUEST: frame_bytes = 16'(CANCEL_REQUEST_BYTES);
        MSG_ACCEPTED: frame_bytes = 16'(ACCEPTED_BYTES);
        MSG_REJECTED: frame_bytes = 16'(REJECTED_BYTES);
        MSG_FILL: frame_bytes = 16'(FILL_BYTES);
        MSG_EXCH_REJECT: frame_bytes = 16'(EXCH_REJECT_BYTES);
        MSG_CANCELLED: frame_bytes = 16'(CANCELLED_BYTES);
        default: frame_bytes = 16'd0;
    endcase
endfunction

// the card runs these types as events
function automatic logic runs(input logic [7:0] t);
    runs = t == MSG_NEW_ORDER || t == MSG_FILL || t == MSG_EXCH_REJECT || t == MSG_CANCELLED;
endfunction

// these types carry order_id at byte 8 and account_id at byte 16
function automatic logic has_ids(input logic [7:0] t);
    has_ids = runs(t) || t == MSG_CANCEL_REQUEST || t == MSG_ACCEPTED || t == MSG_REJECTED;
endfunction

logic [BUF*8-1:0]      buf_reg;
logic [31:0]           stamp_reg [BUF];
logic [CL_BUF-1:0]     count_reg;
logic                  pkt_end_reg;      // the packet's last beat is in the buffer
logic [SESSION_W-1:0]  session_reg;
logic                  skip_reg;         // garbage was skipped and is not yet reported
logic [31:0]           skip_stamp_reg;

logic [7:0]  h_type;
logic [7:0]  h_ver;
logic [15:0] h_len;
logic [31:0] h_seq;
assign h_type = buf_reg[7:0];
assign h_ver = buf_reg[15:8];
assign h_len = buf_reg[31:16];
assign h_seq = buf_reg[63:32];

logic plausible;
assign plausible = 32'(count_reg) >= HEADER_BYTES && frame_bytes(h_type) != 0
    && h_ver == 8'(PROTO_VERSION) && h_len == frame_bytes(h_type);

// what the head of the buffer does this cycle
logic              out_valid;
logic              out_garbage;
logic              out_trunc;
logic [CL_BUF-1:0] pop;          // bytes leaving the buffer
logic              skipping;     // the popped bytes are garbage
logic              pkt_done;

always_comb begin
    out_valid = 1'b0;
    out_garbage = 1'b0;
    out_trunc = 1'b0;
    pop = '0;
    skipping = 1'b0;
    pkt_done = 1'b0;
    if (plausible) begin
        if (skip_reg) begin
            out_valid = 1'b1;
            out_garbage = 1'b1;
        end else if (32'(count_reg) >= 32'(h_len)) begin
            out_valid = 1'b1;
            if (m_ready) pop = CL_BUF'(h_len);
        end else if (pkt_end_reg) begin
            out_valid = 1'b1;
            out_trunc = 1'b1;
            if (m_ready) pop = count_reg;
        end
    end else if (32'(count_reg) >= HEADER_BYTES) begin
        skipping = 1'b1;
        pop = CL_BUF'(1);
    end else if (pkt_end_reg && count_reg != 0) begin
        skipping = 1'b1;
        pop = count_reg;
    end else if (pkt_end_reg) begin
        if (skip_reg) begin
            out_valid = 1'b1;
            out_garbage = 1'b1;
        end else begin
            pkt_done = 1'b1;
        end
    end
end

logic [CL_BUF-1:0] beat_bytes;
always_comb begin
    beat_bytes = '0;
    for (int i = 0; i < DB; i++) begin
        if (s_axis_tkeep[i]) beat_bytes = CL_BUF'(i + 1);
    end
end

logic take;
assign s_axis_tready = enable && !rst && (pkt_end_reg ? pkt_done : 32'(count_reg) <= FB);
assign take = s_axis_tvalid && s_axis_tready;

logic whole;
assign whole = out_valid && !out_garbage && !out_trunc;

assign m_valid = out_valid;
assign m_proto = out_garbage || out_trunc || !runs(h_type);
assign m_type = out_garbage ? 8'h00 : h_type;
assign m_session = session_reg;
assign m_seq = out_garbage ? 32'd0 : h_seq;
assign m_stamp = out_garbage ? skip_stamp_reg : stamp_reg[0];
assign m_order_id = whole && has_ids(h_type) ? buf_reg[64 +: 64] : 64'd0;
assign m_account_id = whole && has_ids(h_type) ? buf_reg[128 +: 32] : 32'd0;
assign m_frame = buf_reg[FB*8-1:0];
assign rx_frame = whole && m_ready;

// the buffer after this cycle's pop, and the beat appended behind it
logic [CL_BUF-1:0] left;
logic [BUF*8-1:0]  buf_left;
logic [BUF*8-1:0]  beat_ext;
assign left = count_reg - pop;
assign buf_left = buf_reg >> (32'(pop) * 8);

always_comb begin
    beat_ext = '0;
    for (int i = 0; i < DB; i++) begin
        if (s_axis_tkeep[i]) beat_ext[i*8 +: 8] = s_axis_tdata[i*8 +: 8];
    end
end

always_ff @(posedge clk) begin
    for (int i = 0; i < BUF; i++) begin
        if (take && i >= 32'(left) && i < 32'(left) + 32'(beat_bytes)) begin
            stamp_reg[i] <= cycle;
        end else begin
            stamp_reg[i] <= i + 32'(pop) < BUF ? stamp_reg[i + 32'(pop)] : 32'd0;
        end
    end
    buf_reg <= take ? buf_left | (beat_ext << (32'(left) * 8)) : buf_left;
    count_reg <= take ? left + beat_bytes : left;
    if (take) begin
        session_reg <= s_axis_tuser;
        pkt_end_reg <= s_axis_tlast;
    end else if (pkt_done) begin
        pkt_end_reg <= 1'b0;
    end
    if (skipping) begin
        if (!skip_reg) skip_stamp_reg <= stamp_reg[0];
        skip_reg <= 1'b1;
    end else if (out_garbage && m_ready) begin
        skip_reg <= 1'b0;
    end

    if (rst) begin
        count_reg <= '0;
        pkt_end_reg <= 1'b0;
        skip_reg <= 1'b0;
        buf_reg <= '0;
    end
end

endmodule

`resetall
