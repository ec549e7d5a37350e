// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Testbench top for rgw_ring_dma: the ring DMA alone (use_card = 0: its streams are the bench's
 * m_axis_rx / s_axis_tx) or wired to rgw_card as bitstreams/connectivity.cfg wires the two kernels
 * (use_card = 1: m_axis_rx -> the card's s_axis_rx, the card's m_axis_tx -> s_axis_tx). One
 * Verilator model serves both, so the suite builds once.
 *
 *   s_axi_control ──► rgw_ring_dma ◄──► m_axi_gmem (AxiRam)
 *                        │    ▲
 *           use_card ? ──┼────┼──► rgw_card ◄── s_axil
 *                        ▼    │     ▲    │
 *                   m_axis_rx s_axis_tx  s_axis_rx / m_axis_tx (the card alone, use_card = 0)
 */
module test_ring_dma #(
    // stream and memory width in bits
    parameter int DATA_W = 512,
    // DOE parameters of the card (see rgw_card)
    parameter int LANES = 8,
    parameter int REGS = 256,
    parameter int PROG_ROWS = 256,
    parameter int TABLES = 8,
    parameter int COLS = 16,
    parameter int ROWS = 1024,
    parameter int KEY_WORDS = 6,
    parameter int WAYS = 4,
    parameter int SCANS = 16,
    parameter int RULES = 64,
    parameter int IN_WORDS = 16,
    // the card's ID block
    parameter logic [159:0] GIT_HASH = '0
) (
    input  wire logic                      clk,
    input  wire logic                      rst,
    // 1: the DMA's streams go to the card; 0: to the bench
    input  wire logic                      use_card,
    // rgw_card's host port (the card's regmap.py)
    input  wire logic [16-1:0]             s_axil_awaddr,
    input  wire logic [2:0]                s_axil_awprot,
    input  wire logic                      s_axil_awvalid,
    output wire logic                      s_axil_awready,
    input  wire logic [31:0]               s_axil_wdata,
    input  wire logic [3:0]                s_axil_wstrb,
    input  wire logic                      s_axil_wvalid,
    output wire logic                      s_axil_wready,
    output wire logic [1:0]                s_axil_bresp,
    output wire logic                      s_axil_bvalid,
    input  wire logic                      s_axil_bready,
    input  wire logic [16-1:0]             s_axil_araddr,
    input  wire logic [2:0]                s_axil_arprot,
    input  wire logic                      s_axil_arvalid,
    output wire logic                      s_axil_arready,
    output wire logic [31:0]               s_axil_rdata,
    output wire logic [1:0]                s_axil_rresp,
    output wire logic                      s_axil_rvalid,
    input  wire logic                      s_axil_rready,
    // rgw_card's TOE streams, driven by the bench when use_card is 0
    input  wire logic [DATA_W-1:0]         s_axis_rx_tdata,
    input  wire logic [DATA_W/8-1:0]       s_axis_rx_tkeep,
    input  wire logic                      s_axis_rx_tvalid,
    output wire logic                      s_axis_rx_tready,
    input  wire logic                      s_axis_rx_tlast,
    input  wire logic [15:0]               s_axis_rx_tuser,
    output wire logic [DATA_W-1:0]         m_axis_tx_tdata,
    output wire logic [DATA_W/8-1:0]       m_axis_tx_tkeep,
    output wire logic                      m_axis_tx_tvalid,
    input  wire logic                      m_axis_tx_tready,
    output wire logic                      m_axis_tx_tlast,
    output wire logic [15:0]               m_axis_tx_tuser,
    // the ring DMA's registers (riskgw/card/rings.py)
    input  wire logic [12-1:0]             s_axi_control_awaddr,
    input  wire logic [2:0]                s_axi_control_awprot,
    input  wire logic                      s_axi_control_awvalid,
    output wire logic                      s_axi_control_awready,
    input  wire logic [31:0]               s_axi_control_wdata,
    input  wire logic [3:0]                s_axi_control_wstrb,
    input  wire logic                      s_axi_control_wvalid,
    output wire logic                      s_axi_control_wready,
    output wire logic [1:0]                s_axi_control_bresp,
    output wire logic                      s_axi_control_bvalid,
    input  wire logic                      s_axi_control_bready,
    input  wire logic [12-1:0]             s_axi_control_araddr,
    input  wire logic [2:0]                s_axi_control_arprot,
    input  wire logic                      s_axi_control_arvalid,
    output wire logic                      s_axi_control_arready,
    output wire logic [31:0]               s_axi_control_rdata,
    output wire logic [1:0]                s_axi_control_rresp,
    output wire logic                      s_axi_control_rvalid,
    input  wire logic                      s_axi_control_rready,
    // the ring DMA's memory port; cocotbext-axi's AxiRam needs the ids, which the kernel has not
    output wire logic [63:0]               m_axi_gmem_awaddr,
    output wire logic [7:0]                m_axi_gmem_awlen,
    output wire logic [2:0]                m_axi_gmem_awsize,
    output wire logic [1:0]                m_axi_gmem_awburst,
    output wire logic                      m_axi_gmem_awvalid,
    input  wire logic                      m_axi_gmem_awready,
    output wire logic [DATA_W-1:0]         m_axi_gmem_wdata,
    output wire logic [DATA_W/8-1:0]       m_axi_gmem_wstrb,
    output wire logic                      m_axi_gmem_wlast,
    output wire logic                      m_axi_gmem_wvalid,
    input  wire logic                      m_axi_gmem_wready,
    input  wire logic [1:0]                m_axi_gmem_bresp,
    input  wire logic                      m_axi_gmem_bvalid,
    output wire logic                      m_axi_gmem_bready,
    output wire logic [63:0]               m_axi_gmem_araddr,
    output wire logic [7:0]                m_axi_gmem_arlen,
    output wire logic [2:0]                m_axi_gmem_arsize,
    output wire logic [1:0]                m_axi_gmem_arburst,
    output wire logic                      m_axi_gmem_arvalid,
    input  wire logic                      m_axi_gmem_arready,
    input  wire logic [DATA_W-1:0]         m_axi_gmem_rdata,
    input  wire logic [1:0]                m_axi_gmem_rresp,
    input  wire logic                      m_axi_gmem_rlast,
    input  wire logic                      m_axi_gmem_rvalid,
    output wire logic                      m_axi_gmem_rready,
    output wire logic                      m_axi_gmem_awid,
    output wire logic                      m_axi_gmem_arid,
    input  wire logic                      m_axi_gmem_bid,
    input  wire logic                      m_axi_gmem_rid,
    // the ring DMA's TOE streams, to the bench when use_card is 0
    output wire logic [DATA_W-1:0]         m_axis_rx_tdata,
    output wire logic [DATA_W/8-1:0]       m_axis_rx_tkeep,
    output wire logic                      m_axis_rx_tvalid,
    input  wire logic                      m_axis_rx_tready,
    output wire logic                      m_axis_rx_tlast,
    output wire logic [15:0]               m_axis_rx_tuser,
    input  wire logic [DATA_W-1:0]         s_axis_tx_tdata,
    input  wire logic [DATA_W/8-1:0]       s_axis_tx_tkeep,
    input  wire logic                      s_axis_tx_tvalid,
    output wire logic                      s_axis_tx_tready,
    input  wire logic                      s_axis_tx_tlast,
    input  wire logic [15:0]               s_axis_tx_tuser
);

logic [DATA_W-1:0]    dma_rx_tdata, dma_tx_tdata, card_rx_tdata, card_tx_tdata;
logic [DATA_W/8-1:0]  dma_rx_tkeep, dma_tx_tkeep, card_rx_tkeep, card_tx_tkeep;
logic                 dma_rx_tvalid, dma_tx_tvalid, card_rx_tvalid, card_tx_tvalid;
logic                 dma_rx_tready, dma_tx_tready, card_rx_tready, card_tx_tready;
logic                 dma_rx_tlast, dma_tx_tlast, card_rx_tlast, card_tx_tlast;
logic [15:0]          dma_rx_tuser, dma_tx_tuser, card_rx_tuser, card_tx_tuser;

// DMA rx -> card rx, card tx -> DMA tx, or each side to the bench
assign card_rx_tdata = use_card ? dma_rx_tdata : s_axis_rx_tdata;
assign card_rx_tkeep = use_card ? dma_rx_tkeep : s_axis_rx_tkeep;
assign card_rx_tvalid = use_card ? dma_rx_tvalid : s_axis_rx_tvalid;
assign card_rx_tlast = use_card ? dma_rx_tlast : s_axis_rx_tlast;
assign card_rx_tuser = use_card ? dma_rx_tuser : s_axis_rx_tuser;
assign s_axis_rx_tready = !use_card && card_rx_tready;
assign dma_rx_tready = use_card ? card_rx_tready : m_axis_rx_tready;
assign m_axis_rx_tdata = dma_rx_tdata;
assign m_axis_rx_tkeep = dma_rx_tkeep;
assign m_axis_rx_tvalid = !use_card && dma_rx_tvalid;
assign m_axis_rx_tlast = dma_rx_tlast;
assign m_axis_rx_tuser = dma_rx_tuser;

assign dma_tx_tdata = use_card ? card_tx_tdata : s_axis_tx_tdata;
assign dma_tx_tkeep = use_card ? card_tx_tkeep : s_axis_tx_tkeep;
assign dma_tx_tvalid = use_card ? card_tx_tvalid : s_axis_tx_tvalid;
assign dma_tx_tlast = use_card ? card_tx_tlast : s_axis_tx_tlast;
assign dma_tx_tuser = use_card ? card_tx_tuser : s_axis_tx_tuser;
assign s_axis_tx_tready = !use_card && dma_tx_tready;
assign card_tx_tready = use_card ? dma_tx_tready : m_axis_tx_tready;
assign m_axis_tx_tdata = card_tx_tdata;
assign m_axis_tx_tkeep = card_tx_tkeep;
assign m_axis_tx_tvalid = !use_card && card_tx_tvalid;
assign m_axis_tx_tlast = card_tx_tlast;
assign m_axis_tx_tuser = card_tx_tuser;

assign m_axi_gmem_awid = 1'b0;
assign m_axi_gmem_arid = 1'b0;

rgw_ring_dma #(
    .DATA_W(DATA_W)
) dma_inst (
    .ap_clk(clk),
    .ap_rst_n(!rst),
    .s_axi_control_awaddr(s_axi_control_awaddr),
    .s_axi_control_awprot(s_axi_control_awprot),
    .s_axi_control_awvalid(s_axi_control_awvalid),
    .s_axi_control_awready(s_axi_control_awready),
    .s_axi_control_wdata(s_axi_control_wdata),
    .s_axi_control_wstrb(s_axi_control_wstrb),
    .s_axi_control_wvalid(s_axi_control_wvalid),
    .s_axi_control_wready(s_axi_control_wready),
    .s_axi_control_bresp(s_axi_control_bresp),
    .s_axi_control_bvalid(s_axi_control_bvalid),
    .s_axi_control_bready(s_axi_control_bready),
    .s_axi_control_araddr(s_axi_control_araddr),
    .s_axi_control_arprot(s_axi_control_arprot),
    .s_axi_control_arvalid(s_axi_control_arvalid),
    .s_axi_control_arready(s_axi_control_arready),
    .s_axi_control_rdata(s_axi_control_rdata),
    .s_axi_control_rresp(s_axi_control_rresp),
    .s_axi_control_rvalid(s_axi_control_rvalid),
    .s_axi_control_rready(s_axi_control_rready),
    .m_axi_gmem_awaddr(m_axi_gmem_awaddr),
    .m_axi_gmem_awlen(m_axi_gmem_awlen),
    .m_axi_gmem_awsize(m_axi_gmem_awsize),
    .m_axi_gmem_awburst(m_axi_gmem_awburst),
    .m_axi_gmem_awvalid(m_axi_gmem_awvalid),
    .m_axi_gmem_awready(m_axi_gmem_awready),
    .m_axi_gmem_wdata(m_axi_gmem_wdata),
    .m_axi_gmem_wstrb(m_axi_gmem_wstrb),
    .m_axi_gmem_wlast(m_axi_gmem_wlast),
    .m_axi_gmem_wvalid(m_axi_gmem_wvalid),
    .m_axi_gmem_wready(m_axi_gmem_wready),
    .m_axi_gmem_bresp(m_axi_gmem_bresp),
    .m_axi_gmem_bvalid(m_axi_gmem_bvalid),
    .m_axi_gmem_bready(m_axi_gmem_bready),
    .m_axi_gmem_araddr(m_axi_gmem_araddr),
    .m_axi_gmem_arlen(m_axi_gmem_arlen),
    .m_axi_gmem_arsize(m_axi_gmem_arsize),
    .m_axi_gmem_arburst(m_axi_gmem_arburst),
    .m_axi_gmem_arvalid(m_axi_gmem_arvalid),
    .m_axi_gmem_arready(m_axi_gmem_arready),
    .m_axi_gmem_rdata(m_axi_gmem_rdata),
    .m_axi_gmem_rresp(m_axi_gmem_rresp),
    .m_axi_gmem_rlast(m_axi_gmem_rlast),
    .m_axi_gmem_rvalid(m_axi_gmem_rvalid),
    .m_axi_gmem_rready(m_axi_gmem_rready),
    .m_axis_rx_tdata(dma_rx_tdata),
    .m_axis_rx_tkeep(dma_rx_tkeep),
    .m_axis_rx_tvalid(dma_rx_tvalid),
    .m_axis_rx_tready(dma_rx_tready),
    .m_axis_rx_tlast(dma_rx_tlast),
    .m_axis_rx_tuser(dma_rx_tuser),
    .s_axis_tx_tdata(dma_tx_tdata),
    .s_axis_tx_tkeep(dma_tx_tkeep),
    .s_axis_tx_tvalid(dma_tx_tvalid),
    .s_axis_tx_tready(dma_tx_tready),
    .s_axis_tx_tlast(dma_tx_tlast),
    .s_axis_tx_tuser(dma_tx_tuser)
);

rgw_card #(
    .DATA_W(DATA_W),
    .LANES(LANES),
    .REGS(REGS),
    .PROG_ROWS(PROG_ROWS),
    .TABLES(TABLES),
    .COLS(COLS),
    .ROWS(ROWS),
    .KEY_WORDS(KEY_WORDS),
    .WAYS(WAYS),
    .SCANS(SCANS),
    .RULES(RULES),
    .IN_WORDS(IN_WORDS),
    .CLOCK_MHZ(250),
    .GIT_HASH(GIT_HASH)
) card_inst (
    .clk(clk),
    .rst(rst),
    .s_axil_awaddr(s_axil_awaddr),
    .s_axil_awprot(s_axil_awprot),
    .s_axil_awvalid(s_axil_awvalid),
    .s_axil_awready(s_axil_awready),
    .s_axil_wdata(s_axil_wdata),
    .s_axil_wstrb(s_axil_wstrb),
    .s_axil_wvalid(s_axil_wvalid),
    .s_axil_wready(s_axil_wready),
    .s_axil_bresp(s_axil_bresp),
    .s_axil_bvalid(s_axil_bvalid),
    .s_axil_bready(s_axil_bready),
    .s_axil_araddr(s_axil_araddr),
    .s_axil_arprot(s_axil_arprot),
    .s_axil_arvalid(s_axil_arvalid),
    .s_axil_arready(s_axil_arready),
    .s_axil_rdata(s_axil_rdata),
    .s_axil_rresp(s_axil_rresp),
    .s_axil_rvalid(s_axil_rvalid),
    .s_axil_rready(s_axil_rready),
    .s_axis_rx_tdata(card_rx_tdata),
    .s_axis_rx_tkeep(card_rx_tkeep),
    .s_axis_rx_tvalid(card_rx_tvalid),
    .s_axis_rx_tready(card_rx_tready),
    .s_axis_rx_tlast(card_rx_tlast),
    .s_axis_rx_tuser(card_rx_tuser),
    .m_axis_tx_tdata(card_tx_tdata),
    .m_axis_tx_tkeep(card_tx_tkeep),
    .m_axis_tx_tvalid(card_tx_tvalid),
    .m_axis_tx_tready(card_tx_tready),
    .m_axis_tx_tlast(card_tx_tlast),
    .m_axis_tx_tuser(card_tx_tuser)
);

// AXI rules the bus models do not check: a valid, once up, stays up with the same payload until
// its ready (AXI4 A3.2.1, AXI4-Stream 2.2.1); a broken rule ends the simulation
typedef struct packed {
    logic [63:0] araddr;
    logic [7:0]  arlen;
    logic [63:0] awaddr;
    logic [7:0]  awlen;
    logic [DATA_W-1:0] wdata;
    logic        wlast;
    logic [DATA_W-1:0] rx_tdata;
    logic [DATA_W/8-1:0] rx_tkeep;
    logic        rx_tlast;
    logic [15:0] rx_tuser;
} held_t;

held_t held, held_reg;
logic  ar_wait_reg, aw_wait_reg, w_wait_reg, rx_wait_reg;

assign held = '{m_axi_gmem_araddr, m_axi_gmem_arlen, m_axi_gmem_awaddr, m_axi_gmem_awlen,
    m_axi_gmem_wdata, m_axi_gmem_wlast, dma_rx_tdata, dma_rx_tkeep, dma_rx_tlast, dma_rx_tuser};

always_ff @(posedge clk) begin
    held_reg <= held;
    ar_wait_reg <= !rst && m_axi_gmem_arvalid && !m_axi_gmem_arready;
    aw_wait_reg <= !rst && m_axi_gmem_awvalid && !m_axi_gmem_awready;
    w_wait_reg <= !rst && m_axi_gmem_wvalid && !m_axi_gmem_wready;
    rx_wait_reg <= !rst && dma_rx_tvalid && !dma_rx_tready;
    if (ar_wait_reg && !(m_axi_gmem_arvalid && held.araddr == held_reg.araddr && held.arlen == held_reg.arlen))
        $fatal(1, "AR changed before arready");
    if (aw_wait_reg && !(m_axi_gmem_awvalid && held.awaddr == held_reg.awaddr && held.awlen == held_reg.awlen))
        $fatal(1, "AW changed before awready");
    if (w_wait_reg && !(m_axi_gmem_wvalid && held.wdata == held_reg.wdata && held.wlast == held_reg.wlast))
        $fatal(1, "W changed before wready");
    if (rx_wait_reg && !(dma_rx_tvalid && held.rx_tdata == held_reg.rx_tdata
            && held.rx_tkeep == held_reg.rx_tkeep && held.rx_tlast == held_reg.rx_tlast
            && held.rx_tuser == held_reg.rx_tuser))
        $fatal(1, "m_axis_rx changed before tready");
end

// the ids AxiRam answers with: one id, never read
logic unused;
assign unused = ^{m_axi_gmem_bid, m_axi_gmem_rid};

endmodule

`resetall
