include $(sort $(wildcard $(BR2_EXTERNAL_OBSBOX_PATH)/package/*/*.mk))
