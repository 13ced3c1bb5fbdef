drop table defect;
