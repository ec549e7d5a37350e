# rgw_ring_dma: the ring DMA kernel of the U200 build (riskgw/card/rings.py)
rgw_ring_dma.sv
