drop table address;
drop table person;
