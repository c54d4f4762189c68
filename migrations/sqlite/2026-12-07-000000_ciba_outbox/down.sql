DROP TABLE ciba_deliveries;
