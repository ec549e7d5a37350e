// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * The ring DMA (riskgw/card/rings.py is the contract): a Vitis RTL kernel (ap_ctrl_none) that
 * moves rx records from a ring in card memory into m_axis_rx and tx packets from s_axis_tx into
 * a second ring, because an XDMA shell gives the host no way to drive a kernel's stream ports.
 * Flat ports with Vitis's names: Vivado infers the bus interfaces from them.
 *
 *   rx ring ──m_axi_gmem AR/R──► rd_buf ──check──► out_buf ──► m_axis_rx (tuser = session)
 *   tx ring ◄─m_axi_gmem AW/W/B── slot ◄── pay_buf ◄── s_axis_tx (tuser = session)
 *
 * A slot: SLOT_BYTES bytes, SLOT_BYTES*8/DATA_W memory beats, moved as one INCR burst.
 *
 *   byte 0 session u16 | 2 length u16 (1..SLOT_BYTES-8) | 4 record u32 | 8.. packet, zero-padded
 *
 * Record n lives at BASE + (n mod SLOTS) * SLOT_BYTES. SLOTS is a power of two; the low
 * $clog2(SLOT_BYTES) bits of BASE are ignored, so a burst never crosses a 4 KiB page.
 *
 * rx: while the next record to read is not RX_HEAD, the DMA reads its slot and checks record == n
 * and 1 <= length <= SLOT_BYTES-8 (else RX_BAD_RECORD, ENABLE clears, and the DMA stops at that
 * record), sends the packet and counts RX_TAIL when the packet's last beat is taken. The next slot
 * is read while a packet is being sent.
 * tx: a packet is taken whole (tkeep all ones but on the last beat), cut to SLOT_BYTES-8 bytes
 * (TX_TOO_LONG), and written to slot TX_HEAD once TX_HEAD - TX_TAIL < TX_SLOTS (a full ring holds
 * s_axis_tx back); TX_HEAD counts when the write answers OKAY.
 * A SLVERR or DECERR sets AXI_ERROR and clears ENABLE; that record is not counted (a failed tx
 * write's packet is lost). One read and one write are in flight at a time: no AXI IDs.
 *
 * Registers (s_axi_control, 32-bit words; rings.py RING_REGS):
 *
 *   0x00 TYPE_VERSION r   0x0006_0001 (RINGS, version 1)
 *   0x04 NEXT         r   0
 *   0x08 CONTROL      rw  [0] ENABLE, [1] RESET (reads 0: zeroes the four indices and STATUS)
 *   0x0c STATUS       w1c [0] RX_BAD_RECORD, [1] TX_TOO_LONG, [2] AXI_ERROR (sticky)
 *   0x10 SLOT_BYTES   r
 *   0x18 RX_BASE      rw  two words, low first       0x30 TX_BASE   rw  two words, low first
 *   0x20 RX_SLOTS     rw                             0x38 TX_SLOTS  rw
 *   0x24 RX_HEAD      rw  written by the host        0x3c TX_HEAD   r   counted by the DMA
 *   0x28 RX_TAIL      r   counted by the DMA         0x40 TX_TAIL   rw  written by the host
 *
 * Bases and slot counts are used while ENABLE is set: write them with ENABLE clear. After RESET a
 * memory access already under way completes and is not counted; a packet already on m_axis_rx
 * finishes (AXI4-Stream cannot take back a beat), and a tx packet half taken is dropped at its end.
 */
module rgw_ring_dma #(
    // stream and memory data width in bits (a multiple of 64: the slot header is in the first beat)
    parameter int DATA_W = 512,
    // bytes per slot (rings.py SLOT_BYTES), a power of two and a whole number of beats
    parameter int SLOT_BYTES = 128,
    // session id (tuser) width
    parameter int SESSION_W = 16,
    // AXI-Lite address width (rings.py RING_ADDR_W)
    parameter int AXIL_ADDR_W = 12
) (
    input  wire logic                    ap_clk,
    input  wire logic                    ap_rst_n,

    input  wire logic [AXIL_ADDR_W-1:0]  s_axi_control_awaddr,
    input  wire logic [2:0]              s_axi_control_awprot,
    input  wire logic                    s_axi_control_awvalid,
    output wire logic                    s_axi_control_awready,
    input  wire logic [31:0]             s_axi_control_wdata,
    input  wire logic [3:0]              s_axi_control_wstrb,
    input  wire logic                    s_axi_control_wvalid,
    output wire logic                    s_axi_control_wready,
    output wire logic [1:0]              s_axi_control_bresp,
    output wire logic                    s_axi_control_bvalid,
    input  wire logic                    s_axi_control_bready,
    input  wire logic [AXIL_ADDR_W-1:0]  s_axi_control_araddr,
    input  wire logic [2:0]              s_axi_control_arprot,
    input  wire logic                    s_axi_control_arvalid,
    output wire logic                    s_axi_control_arready,
    output wire logic [31:0]             s_axi_control_rdata,
    output wire logic [1:0]              s_axi_control_rresp,
    output wire logic                    s_axi_control_rvalid,
    input  wire logic                    s_axi_control_rready,

    output wire logic [63:0]             m_axi_gmem_awaddr,
    output wire logic [7:0]              m_axi_gmem_awlen,
    output wire logic [2:0]              m_axi_gmem_awsize,
    output wire logic [1:0]              m_axi_gmem_awburst,
    output wire logic                    m_axi_gmem_awvalid,
    input  wire logic                    m_axi_gmem_awready,
    output wire logic [DATA_W-1:0]       m_axi_gmem_wdata,
    output wire logic [DATA_W/8-1:0]     m_axi_gmem_wstrb,
    output wire logic                    m_axi_gmem_wlast,
    output wire logic                    m_axi_gmem_wvalid,
    input  wire logic                    m_axi_gmem_wready,
    input  wire logic [1:0]              m_axi_gmem_bresp,
    input  wire logic                    m_axi_gmem_bvalid,
    output wire logic                    m_axi_gmem_bready,
    output wire logic [63:0]             m_axi_gmem_araddr,
    output wire logic [7:0]              m_axi_gmem_arlen,
    output wire logic [2:0]              m_axi_gmem_arsize,
    output wire logic [1:0]              m_axi_gmem_arburst,
    output wire logic                    m_axi_gmem_arvalid,
    input  wire logic                    m_axi_gmem_arready,
    input  wire logic [DATA_W-1:0]       m_axi_gmem_rdata,
    input  wire logic [1:0]              m_axi_gmem_rresp,
    input  wire logic                    m_axi_gmem_rlast,
    input  wire logic                    m_axi_gmem_rvalid,
    output wire logic                    m_axi_gmem_rready,

    output wire logic [DATA_W-1:0]       m_axis_rx_tdata,
    output wire logic [DATA_W/8-1:0]     m_axis_rx_tkeep,
    output wire logic                    m_axis_rx_tvalid,
    input  wire logic                    m_axis_rx_tready,
    output wire logic                    m_axis_rx_tlast,
    output wire logic [SESSION_W-1:0]    m_axis_rx_tuser,

    input  wire logic [DATA_W-1:0]       s_axis_tx_tdata,
    input  wire logic [DATA_W/8-1:0]     s_axis_tx_tkeep,
    input  wire logic                    s_axis_tx_tvalid,
    output wire logic                    s_axis_tx_tready,
    input  wire logic                    s_axis_tx_tlast,
    input  wire logic [SESSION_W-1:0]    s_axis_tx_tuser
);

localparam logic [31:0] TYPE_VERSION = 32'h0006_0001;  // RINGS block, version 1
localparam int KEEP_W = DATA_W / 8;
localparam int HDR_BYTES = 8;
localparam int MAX_PACKET = SLOT_BYTES - HDR_BYTES;
localparam int BEATS = SLOT_BYTES / KEEP_W;  // memory beats per slot
localparam int PAY_BEATS = (MAX_PACKET + KEEP_W - 1) / KEEP_W;  // beats of the longest packet
localparam int CL_SLOT_BYTES = $clog2(SLOT_BYTES);
localparam int CL_KEEP = $clog2(KEEP_W);
localparam int BEAT_W = $clog2(BEATS + 1);
localparam int PBEAT_W = $clog2(PAY_BEATS + 1);
localparam int LEN_W = CL_SLOT_BYTES + 1;  // holds 0..SLOT_BYTES

initial begin
    if (DATA_W % 64 != 0) $fatal(1, "rgw_ring_dma: DATA_W must be a multiple of 64");
    if (SLOT_BYTES != 1 << CL_SLOT_BYTES)
        $fatal(1, "rgw_ring_dma: SLOT_BYTES must be a power of two");
    if (SLOT_BYTES % KEEP_W != 0 || BEATS > 256)
        $fatal(1, "rgw_ring_dma: a slot must be 1..256 whole memory beats");
    if (SESSION_W > 16) $fatal(1, "rgw_ring_dma: the slot header holds a 16-bit session");
end

// the shell holds ap_rst_n low for many cycles, far from the kernel: one register on it
logic rst;

always_ff @(posedge ap_clk) begin
    rst <= !ap_rst_n;
end

// ---------------------------------------------------------------- registers

logic        enable_reg;
logic [2:0]  status_reg;   // RX_BAD_RECORD, TX_TOO_LONG, AXI_ERROR
logic [63:0] rx_base_reg;
logic [31:0] rx_slots_reg;
logic [31:0] rx_head_reg;
logic [31:0] rx_tail_reg;
logic [63:0] tx_base_reg;
logic [31:0] tx_slots_reg;
logic [31:0] tx_head_reg;
logic [31:0] tx_tail_reg;

// events from the data paths (one cycle each)
logic        rx_sent;      // the last beat of a counted rx packet was taken
logic        tx_written;   // a counted tx slot's write answered OKAY
logic [2:0]  status_set;
logic        stop;         // clear ENABLE

logic        bvalid_reg;
logic        rvalid_reg;
logic [31:0] rdata_reg;

logic                   do_write;
logic                   do_read;
logic [AXIL_ADDR_W-1:0] waddr;
logic                   ring_rst;  // CONTROL.RESET written this cycle

assign do_write = s_axi_control_awvalid && s_axi_control_wvalid && !bvalid_reg;
assign do_read = s_axi_control_arvalid && !rvalid_reg;
assign waddr = {s_axi_control_awaddr[AXIL_ADDR_W-1:2], 2'b00};
assign ring_rst = do_write && waddr == 'h08 && s_axi_control_wstrb[0] && s_axi_control_wdata[1];

assign s_axi_control_awready = do_write;
assign s_axi_control_wready = do_write;
assign s_axi_control_bvalid = bvalid_reg;
assign s_axi_control_bresp = 2'b00;
assign s_axi_control_arready = do_read;
assign s_axi_control_rvalid = rvalid_reg;
assign s_axi_control_rdata = rdata_reg;
assign s_axi_control_rresp = 2'b00;

logic [31:0] wdata;
logic [3:0]  wstrb;
assign wdata = s_axi_control_wdata;
assign wstrb = s_axi_control_wstrb;

// the written word, byte enables applied to the register's current value
function automatic logic [31:0] merge(input logic [31:0] old, input logic [31:0] data,
                                      input logic [3:0] strb);
    for (int i = 0; i < 4; i++) merge[i*8 +: 8] = strb[i] ? data[i*8 +: 8] : old[i*8 +: 8];
endfunction

logic [2:0] status_clear;  // STATUS bits written 1
assign status_clear = do_write && waddr == 'h0c && wstrb[0] ? wdata[2:0] : 3'd0;

logic [31:0] rd_val;

always_comb begin
    case ({s_axi_control_araddr[AXIL_ADDR_W-1:2], 2'b00})
        'h00: rd_val = TYPE_VERSION;
        'h08: rd_val = {31'd0, enable_reg};
        'h0c: rd_val = {29'd0, status_reg};
        'h10: rd_val = 32'(SLOT_BYTES);
        'h18: rd_val = rx_base_reg[31:0];
        'h1c: rd_val = rx_base_reg[63:32];
        'h20: rd_val = rx_slots_reg;
        'h24: rd_val = rx_head_reg;
        'h28: rd_val = rx_tail_reg;
        'h30: rd_val = tx_base_reg[31:0];
        'h34: rd_val = tx_base_reg[63:32];
        'h38: rd_val = tx_slots_reg;
        'h3c: rd_val = tx_head_reg;
        'h40: rd_val = tx_tail_reg;
        default: rd_val = '0;  // NEXT (0x04) and unmapped addresses
    endcase
end

always_ff @(posedge ap_clk) begin
    if (do_write) bvalid_reg <= 1'b1;
    else if (s_axi_control_bready) bvalid_reg <= 1'b0;
    if (do_read) begin
        rvalid_reg <= 1'b1;
        rdata_reg <= rd_val;
    end else if (s_axi_control_rready) begin
        rvalid_reg <= 1'b0;
    end

    if (do_write) begin
        case (waddr)
            'h08: if (wstrb[0]) enable_reg <= wdata[0];
            'h18: rx_base_reg[31:0] <= merge(rx_base_reg[31:0], wdata, wstrb);
            'h1c: rx_base_reg[63:32] <= merge(rx_base_reg[63:32], wdata, wstrb);
            'h20: rx_slots_reg <= merge(rx_slots_reg, wdata, wstrb);
            'h24: rx_head_reg <= merge(rx_head_reg, wdata, wstrb);
            'h30: tx_base_reg[31:0] <= merge(tx_base_reg[31:0], wdata, wstrb);
            'h34: tx_base_reg[63:32] <= merge(tx_base_reg[63:32], wdata, wstrb);
            'h38: tx_slots_reg <= merge(tx_slots_reg, wdata, wstrb);
            'h40: tx_tail_reg <= merge(tx_tail_reg, wdata, wstrb);
            default: ;
        endcase
    end
    // an error is never lost to a STATUS write or an ENABLE write in the same cycle
    status_reg <= (status_reg & ~status_clear) | status_set;
    if (stop) enable_reg <= 1'b0;
    if (rx_sent) rx_tail_reg <= rx_tail_reg + 1;
    if (tx_written) tx_head_reg <= tx_head_reg + 1;

    if (ring_rst) begin
        status_reg <= '0;
        rx_head_reg <= '0;
        rx_tail_reg <= '0;
        tx_head_reg <= '0;
        tx_tail_reg <= '0;
    end

    if (rst) begin
        bvalid_reg <= 1'b0;
        rvalid_reg <= 1'b0;
        enable_reg <= 1'b0;
        status_reg <= '0;
        rx_base_reg <= '0;
        rx_slots_reg <= '0;
        rx_head_reg <= '0;
        rx_tail_reg <= '0;
        tx_base_reg <= '0;
        tx_slots_reg <= '0;
        tx_head_reg <= '0;
        tx_tail_reg <= '0;
    end
end

// the address of record n's slot in a ring
function automatic logic [63:0] slot_addr(input logic [63-CL_SLOT_BYTES:0] base_hi,
                                          input logic [31:0] slots, input logic [31:0] n);
    slot_addr = {base_hi, CL_SLOT_BYTES'(0)}
        + ({32'd0, n & (slots - 1)} << CL_SLOT_BYTES);
endfunction

// ---------------------------------------------------------------- rx: ring -> m_axis_rx

typedef enum logic [1:0] {
    RD_IDLE,
    RD_ADDR,   // AR offered
    RD_DATA,   // taking the slot's beats
    RD_CHECK   // the whole slot is in rd_buf
} rd_state_t;

rd_state_t                 rd_state_reg;
logic [31:0]               rd_n_reg;       // the record read next
logic [63:0]               araddr_reg;
logic [BEAT_W-1:0]         rd_beat_reg;
logic [SLOT_BYTES*8-1:0]   rd_buf_reg;
logic                      rd_err_reg;     // a beat of this slot answered SLVERR/DECERR
logic                      rd_flush_reg;   // RESET came during this read: drop it
logic                      rd_full_reg;    // rd_buf holds a checked record for the out stage

logic [15:0]               rd_session;
logic [15:0]               rd_length;
logic [31:0]               rd_record;
logic                      rd_good;

assign rd_session = rd_buf_reg[0 +: 16];
assign rd_length = rd_buf_reg[16 +: 16];
assign rd_record = rd_buf_reg[32 +: 32];
assign rd_good = rd_record == rd_n_reg && rd_length != 0 && rd_length <= 16'(MAX_PACKET);

logic                      out_valid_reg;
logic [PAY_BEATS*DATA_W-1:0] out_buf_reg;
logic [LEN_W-1:0]          out_rem_reg;     // bytes of the packet still to send
logic [SESSION_W-1:0]      out_session_reg;
logic                      out_stale_reg;   // sent before a RESET: not counted
logic                      out_last;
logic                      out_take;
logic                      out_load;

assign out_last = out_rem_reg <= LEN_W'(KEEP_W);
assign out_take = out_valid_reg && m_axis_rx_tready;
assign out_load = rd_full_reg && !ring_rst && (!out_valid_reg || (out_take && out_last));

assign m_axi_gmem_araddr = araddr_reg;
assign m_axi_gmem_arlen = 8'(BEATS - 1);
assign m_axi_gmem_arsize = 3'(CL_KEEP);
assign m_axi_gmem_arburst = 2'b01;  // INCR
assign m_axi_gmem_arvalid = rd_state_reg == RD_ADDR;
assign m_axi_gmem_rready = rd_state_reg == RD_DATA;

assign m_axis_rx_tdata = out_buf_reg[DATA_W-1:0];
assign m_axis_rx_tvalid = out_valid_reg;
assign m_axis_rx_tlast = out_last;
assign m_axis_rx_tuser = out_session_reg;
logic [KEEP_W-1:0] out_keep;

always_comb begin
    for (int i = 0; i < KEEP_W; i++) out_keep[i] = LEN_W'(i) < out_rem_reg;
end

assign m_axis_rx_tkeep = out_keep;

logic [2:0] rd_status;
logic       rd_stop;

always_comb begin
    rd_status = '0;
    rd_stop = 1'b0;
    if (rd_state_reg == RD_CHECK && !rd_flush_reg && !ring_rst) begin
        if (rd_err_reg) begin
            rd_status[2] = 1'b1;
            rd_stop = 1'b1;
        end else if (!rd_good) begin
            rd_status[0] = 1'b1;
            rd_stop = 1'b1;
        end
    end
end

always_ff @(posedge ap_clk) begin
    case (rd_state_reg)
        RD_IDLE: begin
            if (enable_reg && !stop && !ring_rst && !rd_full_reg && rd_n_reg != rx_head_reg) begin
                araddr_reg <= slot_addr(rx_base_reg[63:CL_SLOT_BYTES], rx_slots_reg, rd_n_reg);
                rd_state_reg <= RD_ADDR;
            end
        end
        RD_ADDR: begin
            if (m_axi_gmem_arready) begin
                rd_beat_reg <= '0;
                rd_err_reg <= 1'b0;
                rd_state_reg <= RD_DATA;
            end
        end
        RD_DATA: begin
            if (m_axi_gmem_rvalid) begin
                for (int b = 0; b < BEATS; b++) begin
                    if (rd_beat_reg == BEAT_W'(b))
                        rd_buf_reg[b*DATA_W +: DATA_W] <= m_axi_gmem_rdata;
                end
                rd_beat_reg <= rd_beat_reg + 1;
                if (m_axi_gmem_rresp[1]) rd_err_reg <= 1'b1;
                if (m_axi_gmem_rlast) rd_state_reg <= RD_CHECK;
            end
        end
        RD_CHECK: begin
            if (!rd_flush_reg && !ring_rst && !rd_err_reg && rd_good) begin
                rd_full_reg <= 1'b1;
                rd_n_reg <= rd_n_reg + 1;
            end
            rd_flush_reg <= 1'b0;
            rd_state_reg <= RD_IDLE;
        end
        default: rd_state_reg <= RD_IDLE;
    endcase

    if (out_load) begin
        rd_full_reg <= 1'b0;
        out_valid_reg <= 1'b1;
        out_buf_reg <= (PAY_BEATS*DATA_W)'(rd_buf_reg[SLOT_BYTES*8-1:HDR_BYTES*8]);
        out_rem_reg <= LEN_W'(rd_length);
        out_session_reg <= SESSION_W'(rd_session);
        out_stale_reg <= 1'b0;
    end else if (out_take) begin
        out_buf_reg <= out_buf_reg >> DATA_W;
        out_rem_reg <= out_rem_reg - LEN_W'(KEEP_W);
        if (out_last) out_valid_reg <= 1'b0;
    end

    if (ring_rst) begin
        rd_n_reg <= '0;
        rd_full_reg <= 1'b0;
        if (rd_state_reg == RD_ADDR || rd_state_reg == RD_DATA) rd_flush_reg <= 1'b1;
        if (out_valid_reg && !(out_take && out_last)) out_stale_reg <= 1'b1;
    end

    if (rst) begin
        rd_state_reg <= RD_IDLE;
        rd_n_reg <= '0;
        rd_flush_reg <= 1'b0;
        rd_full_reg <= 1'b0;
        out_valid_reg <= 1'b0;
        out_stale_reg <= 1'b0;
    end
end

assign rx_sent = out_take && out_last && !out_stale_reg && !ring_rst;

// ---------------------------------------------------------------- tx: s_axis_tx -> ring

typedef enum logic [1:0] {
    TX_TAKE,   // taking a packet from s_axis_tx
    TX_WAIT,   // a whole packet in pay_buf, waiting for room in the ring
    TX_WRITE,  // AW and W offered
    TX_RESP    // waiting for B
} tx_state_t;

tx_state_t                   tx_state_reg;
// the bytes past MAX_PACKET in the last beat are taken and never written to the slot
/* verilator lint_off UNUSEDSIGNAL */
logic [PAY_BEATS*DATA_W-1:0] pay_buf_reg;
/* verilator lint_on UNUSEDSIGNAL */
logic [PBEAT_W-1:0]          tx_beat_reg;     // beats taken of this packet (saturates)
logic [LEN_W-1:0]            tx_len_reg;      // bytes kept (at most MAX_PACKET)
logic                        tx_long_reg;     // the packet had more bytes than a slot holds
logic [SESSION_W-1:0]        tx_session_reg;
logic                        tx_drop_reg;     // taken across a RESET: dropped
logic                        aw_done_reg;
logic [63:0]                 awaddr_reg;
logic [31:0]                 tx_rec_reg;      // the record number written (TX_HEAD at the start)
logic [BEAT_W-1:0]           w_beat_reg;
logic                        tx_room;
logic                        tx_take;

assign tx_room = tx_head_reg - tx_tail_reg < tx_slots_reg;
assign s_axis_tx_tready = tx_state_reg == TX_TAKE && enable_reg;
assign tx_take = s_axis_tx_tvalid && s_axis_tx_tready;

// bytes of this beat (tkeep contiguous from byte 0) and the packet so far, before the cut
logic [CL_KEEP:0]   beat_bytes;
logic [LEN_W:0]     tx_sum;
logic [DATA_W-1:0]  beat_data;

always_comb begin
    beat_bytes = '0;
    for (int i = 0; i < KEEP_W; i++) begin
        if (s_axis_tx_tkeep[i]) beat_bytes = (CL_KEEP + 1)'(i + 1);
    end
    if (!s_axis_tx_tlast) beat_bytes = (CL_KEEP + 1)'(KEEP_W);
    tx_sum = (LEN_W + 1)'(tx_len_reg) + (LEN_W + 1)'(beat_bytes);
    for (int i = 0; i < KEEP_W; i++) begin
        beat_data[i*8 +: 8] = s_axis_tx_tkeep[i] ? s_axis_tx_tdata[i*8 +: 8] : 8'd0;
    end
end

// the slot as written: header, then the packet's first MAX_PACKET bytes
logic [SLOT_BYTES*8-1:0] slot;
assign slot = {pay_buf_reg[MAX_PACKET*8-1:0], tx_rec_reg, 16'(tx_len_reg), 16'(tx_session_reg)};

assign m_axi_gmem_awaddr = awaddr_reg;
assign m_axi_gmem_awlen = 8'(BEATS - 1);
assign m_axi_gmem_awsize = 3'(CL_KEEP);
assign m_axi_gmem_awburst = 2'b01;  // INCR
assign m_axi_gmem_awvalid = tx_state_reg == TX_WRITE && !aw_done_reg;
assign m_axi_gmem_wvalid = tx_state_reg == TX_WRITE && w_beat_reg != BEAT_W'(BEATS);
assign m_axi_gmem_wstrb = '1;
assign m_axi_gmem_wlast = w_beat_reg == BEAT_W'(BEATS - 1);
assign m_axi_gmem_bready = tx_state_reg == TX_RESP;

logic [DATA_W-1:0] w_data;

always_comb begin
    w_data = slot[DATA_W-1:0];
    for (int b = 1; b < BEATS; b++) begin
        if (w_beat_reg == BEAT_W'(b)) w_data = slot[b*DATA_W +: DATA_W];
    end
end

assign m_axi_gmem_wdata = w_data;

logic [2:0] tx_status;
logic       tx_stop;

always_comb begin
    tx_status = '0;
    tx_stop = 1'b0;
    if (tx_state_reg == TX_RESP && m_axi_gmem_bvalid && !tx_drop_reg && !ring_rst) begin
        if (m_axi_gmem_bresp[1]) begin
            tx_status[2] = 1'b1;
            tx_stop = 1'b1;
        end
    end
    if (tx_state_reg == TX_TAKE && tx_take && s_axis_tx_tlast && !tx_drop_reg && !ring_rst
        && (tx_long_reg || tx_sum > (LEN_W + 1)'(MAX_PACKET))) begin
        tx_status[1] = 1'b1;
    end
end

assign tx_written = tx_state_reg == TX_RESP && m_axi_gmem_bvalid && !m_axi_gmem_bresp[1]
    && !tx_drop_reg && !ring_rst;
assign status_set = rd_status | tx_status;
assign stop = rd_stop | tx_stop;

always_ff @(posedge ap_clk) begin
    case (tx_state_reg)
        TX_TAKE: begin
            if (tx_take) begin
                for (int b = 0; b < PAY_BEATS; b++) begin
                    if (tx_beat_reg == PBEAT_W'(b)) pay_buf_reg[b*DATA_W +: DATA_W] <= beat_data;
                    else if (tx_beat_reg == '0) pay_buf_reg[b*DATA_W +: DATA_W] <= '0;
                end
                if (tx_beat_reg != PBEAT_W'(PAY_BEATS)) tx_beat_reg <= tx_beat_reg + 1;
                if (tx_beat_reg == '0) tx_session_reg <= s_axis_tx_tuser;
                if (tx_sum > (LEN_W + 1)'(MAX_PACKET)) begin
                    tx_len_reg <= LEN_W'(MAX_PACKET);
                    tx_long_reg <= 1'b1;
                end else begin
                    tx_len_reg <= LEN_W'(tx_sum);
                end
                if (s_axis_tx_tlast) tx_state_reg <= TX_WAIT;
            end
        end
        TX_WAIT: begin
            if (tx_drop_reg) begin
                tx_state_reg <= TX_TAKE;
            end else if (enable_reg && !stop && !ring_rst && tx_room) begin
                aw_done_reg <= 1'b0;
                w_beat_reg <= '0;
                awaddr_reg <= slot_addr(tx_base_reg[63:CL_SLOT_BYTES], tx_slots_reg, tx_head_reg);
                tx_rec_reg <= tx_head_reg;
                tx_state_reg <= TX_WRITE;
            end
        end
        TX_WRITE: begin
            if (m_axi_gmem_awvalid && m_axi_gmem_awready) aw_done_reg <= 1'b1;
            if (m_axi_gmem_wvalid && m_axi_gmem_wready) w_beat_reg <= w_beat_reg + 1;
            if ((aw_done_reg || m_axi_gmem_awready)
                && (w_beat_reg == BEAT_W'(BEATS)
                    || (m_axi_gmem_wready && m_axi_gmem_wlast))) begin
                tx_state_reg <= TX_RESP;
            end
        end
        TX_RESP: begin
            if (m_axi_gmem_bvalid) tx_state_reg <= TX_TAKE;
        end
        default: tx_state_reg <= TX_TAKE;
    endcase

    // the next packet starts from empty (the slot's header reads tx_len_reg until B)
    if ((tx_state_reg == TX_WAIT && tx_drop_reg)
        || (tx_state_reg == TX_RESP && m_axi_gmem_bvalid)) begin
        tx_beat_reg <= '0;
        tx_len_reg <= '0;
        tx_long_reg <= 1'b0;
        tx_drop_reg <= 1'b0;
    end

    if (ring_rst && (tx_state_reg != TX_TAKE || tx_beat_reg != '0 || tx_take)) tx_drop_reg <= 1'b1;

    if (rst) begin
        tx_state_reg <= TX_TAKE;
        tx_beat_reg <= '0;
        tx_len_reg <= '0;
        tx_long_reg <= 1'b0;
        tx_drop_reg <= 1'b0;
    end
end

// the protection bits, the low response bits (OKAY and EXOKAY both mean done) and the CONTROL
// bits above RESET carry nothing this kernel uses
logic unused;
assign unused = ^{s_axi_control_awprot, s_axi_control_arprot, s_axi_control_awaddr[1:0],
    s_axi_control_araddr[1:0], m_axi_gmem_bresp[0], m_axi_gmem_rresp[0]};

endmodule

`resetall
